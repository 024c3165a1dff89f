//! Test support: run real processes on a throwaway virtual LAN built from Linux
//! network namespaces. Needs root and iproute2 (`ip`, `tc`); std only.
//!
//! Nothing is created in the root namespace: the bridge and both ends of every
//! veth live in namespaces made here, so test traffic (mDNS multicast included)
//! can never reach the machine's real interfaces.
//!
//! `Lan::new(n)` builds:
//! - switch namespace `fy{pid}-{k}s`: bridge `br0` with multicast snooping off
//!   (so mDNS floods to every port instead of depending on IGMP/MLD state) and
//!   ports `p0..p{n-1}`;
//! - host namespaces `fy{pid}-{k}h{i}`: `lo` up, `eth0` up with 10.99.0.{i+1}/24,
//!   static link-local fe80::{i+1}/64 (no DAD, see `setup_host`) and a route for
//!   224.0.0.0/4 (there is no default route, so multicast sent without
//!   IP_MULTICAST_IF would otherwise fail with ENETUNREACH).
//!
//! The only sleep is `wait_links`' short poll for the kernel's asynchronous
//! link-state handling; STP is off (ports forward at once), IPv4 has no DAD
//! and IPv6 DAD is skipped.
#![allow(dead_code)]

use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NETNS_DIR: &str = "/run/netns";
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn next_prefix() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("fy{}-{n}", std::process::id())
}

/// Runs `program args..` with `stdin` piped in; on failure the error names
/// the command, its stdin (the `-batch -` script, if any) and its stderr.
fn run(program: &str, args: &[&str], stdin: &str) -> io::Result<String> {
    let fail = |why: String| {
        let input = (!stdin.is_empty()).then(|| format!(" <<< {stdin:?}"));
        let cmd = format!("{program} {}{}", args.join(" "), input.unwrap_or_default());
        io::Error::other(format!("netns: `{cmd}` failed: {why}"))
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    // A write error (EPIPE if `ip` quit early) shows in the exit status.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes()); // dropped: EOF
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(fail(format!("{}: {}", out.status, stderr.trim()))),
    }
}

/// `ip [-force] [-n ns] -batch -`: one process for many commands.
fn ip_batch(ns: Option<&str>, force: bool, lines: &[String]) -> io::Result<()> {
    let mut args = if force { vec!["-force"] } else { vec![] }; // go on past failed lines
    args.extend(ns.map(|ns| ["-n", ns]).into_iter().flatten());
    args.extend(["-batch", "-"]);
    run("ip", &args, &(lines.join("\n") + "\n")).map(drop)
}

/// Once per process: remove stale namespaces, then create and delete a probe
/// namespace: proves we may (uid 0 is not enough in an unprivileged container)
/// and sets up the /run/netns mount before test threads race to do it.
/// Ok(whether the kernel has netem).
fn probe() -> &'static Result<bool, String> {
    static PROBE: OnceLock<Result<bool, String>> = OnceLock::new();
    PROBE.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        // "Uid:\treal\teffective\tsaved\tfs"
        let euid = status.lines().find(|l| l.starts_with("Uid:"));
        let euid = euid.and_then(|l| l.split_whitespace().nth(2));
        if euid != Some("0") {
            return Err(format!("netns tests need root (effective uid {euid:?})"));
        }
        for tool in ["ip", "tc"] {
            run(tool, &["-V"], "")
                .map_err(|e| format!("{tool} (Debian package iproute2) unusable: {e}"))?;
        }
        cleanup_stale();
        let ns = format!("{}p", next_prefix());
        run("ip", &["netns", "add", &ns], "").map_err(|e| e.to_string())?;
        // Kernels may lack sch_netem (CONFIG_NET_SCH_NETEM): let tests skip.
        let netem = run(
            "tc",
            &["-n", &ns, "qdisc", "add", "dev", "lo", "root", "netem"],
            "",
        );
        let netem = netem.is_ok();
        let _ = run("ip", &["netns", "del", &ns], "");
        Ok(netem)
    })
}

/// Ok if we are root and can create network namespaces with iproute2.
pub fn available() -> Result<(), String> {
    probe().as_ref().map(drop).map_err(Clone::clone)
}

/// Whether the kernel has the netem qdisc (needed by `Lan::netem`).
pub fn netem_supported() -> bool {
    probe() == &Ok(true)
}

/// Best effort: deletes namespaces named `fy{pid}-...` whose pid is gone
/// (left behind by a test process that was killed before `Drop` ran).
pub fn cleanup_stale() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let stale: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| {
            let Some((pid, _)) = name.strip_prefix("fy").and_then(|r| r.split_once('-')) else {
                return false;
            };
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(|name| format!("netns del {name}"))
        .collect();
    if !stale.is_empty() {
        let _ = ip_batch(None, true, &stale);
    }
}

/// A virtual LAN: `n` host namespaces on one bridge. See the module docs.
///
/// Dropping it deletes its namespaces. Kill (and wait for) every process you
/// started in it first: a namespace with processes still inside only loses
/// its name and lives on, unreachable, until those processes exit.
pub struct Lan {
    switch: String,
    hosts: Vec<String>,
}

impl Lan {
    pub fn new(hosts: usize) -> io::Result<Lan> {
        available().map_err(io::Error::other)?;
        if hosts == 0 || hosts > 250 {
            return Err(io::Error::other(format!("netns: bad host count {hosts}")));
        }
        let prefix = next_prefix();
        // Built before anything exists so that an early `?` return drops it
        // and cleans up whatever was created (deleting missing ones is ignored).
        let lan = Lan {
            switch: format!("{prefix}s"),
            hosts: (0..hosts).map(|i| format!("{prefix}h{i}")).collect(),
        };
        let mut root: Vec<String> = vec![format!("netns add {}", lan.switch)];
        root.extend(lan.hosts.iter().map(|h| format!("netns add {h}")));
        // Both veth ends are created directly in their target namespaces.
        root.extend(lan.hosts.iter().enumerate().map(|(i, h)| {
            format!(
                "link add eth0 netns {h} type veth peer name p{i} netns {}",
                lan.switch
            )
        }));
        ip_batch(None, false, &root)?;

        let mut sw = vec![
            "link add br0 type bridge mcast_snooping 0".to_string(),
            "link set br0 up".into(),
        ];
        sw.extend((0..hosts).map(|i| format!("link set p{i} master br0 up")));
        ip_batch(Some(&lan.switch), false, &sw)?;

        for i in 0..hosts {
            lan.setup_host(i)?;
        }
        lan.wait_links(0..hosts, true)?;
        Ok(lan)
    }

    fn setup_host(&self, i: usize) -> io::Result<()> {
        // Kernel-generated link-local addresses would sit "tentative" for ~1-2 s
        // of IPv6 DAD after link-up (IPv6 multicast fails meanwhile), so use a
        // static fe80::{i+1} marked `nodad` instead; it is usable at once.
        let lines = [
            "link set lo up".to_string(),
            "link set eth0 addrgenmode none".into(),
            format!("addr add {}/24 dev eth0", self.host_ip(i)),
            format!("addr add {}/64 dev eth0 nodad", self.host_ip6(i)),
            "link set eth0 up".into(),
            "route add 224.0.0.0/4 dev eth0".into(),
        ];
        ip_batch(Some(&self.hosts[i]), false, &lines)
    }

    /// Waits until host i's eth0 operstate is UP (or not UP) and, for `up`, its
    /// switch port forwards. The only wait in this module, and it is needed:
    /// the kernel applies carrier changes asynchronously (linkwatch worker,
    /// under the rtnl lock that namespace teardown elsewhere can hold for
    /// seconds). Until then the bridge keeps the port disabled, dropping
    /// frames, and the host's eth0 lacks IFF_RUNNING, so apps may skip it.
    fn wait_links(&self, hosts: impl Iterator<Item = usize> + Clone, up: bool) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sw = run("ip", &["-n", &self.switch, "-d", "-o", "link", "show"], "")?;
            let mut pending = vec![];
            for i in hosts.clone() {
                let port = sw.lines().find(|l| l.contains(&format!(" p{i}@")));
                if up && !port.is_some_and(|l| l.contains("state UP") && l.contains("forwarding")) {
                    pending.push(format!("p{i}"));
                }
                let eth0 = run("ip", &["-n", self.ns(i), "-o", "link", "show", "eth0"], "")?;
                if eth0.contains(" state UP ") != up {
                    pending.push(format!("{}:eth0", self.ns(i)));
                }
            }
            if pending.is_empty() {
                return Ok(());
            } else if Instant::now() > deadline {
                let want = if up { "up" } else { "down" };
                let msg = format!("netns: {pending:?} not {want} after 20 s");
                return Err(io::Error::other(msg));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// 10.99.0.{i+1}
    pub fn host_ip(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.hosts.len(), "netns: no host {i}");
        Ipv4Addr::new(10, 99, 0, i as u8 + 1)
    }

    /// fe80::{i+1} on host i's eth0 (a scope id is needed to use it).
    pub fn host_ip6(&self, i: usize) -> Ipv6Addr {
        assert!(i < self.hosts.len(), "netns: no host {i}");
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, i as u16 + 1)
    }

    /// Name of host i's namespace (for `ip netns exec`, `ip -n`, `tc -n`).
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Name of the switch namespace (e.g. to run `tcpdump -i br0` there).
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }

    /// `ip netns exec NS program`; add args and spawn. `ip` execs the program
    /// in place, so the child's pid is the program's and `kill()` reaches it.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(i), program]);
        cmd
    }

    /// Unplugs (`up == false`) or replugs host i's cable at the switch port:
    /// the host keeps its addresses and just sees carrier loss. Returns once
    /// the host sees the change (and, for up, the port forwards again).
    pub fn set_link(&self, i: usize, up: bool) -> io::Result<()> {
        let (port, state) = (format!("p{i}"), if up { "up" } else { "down" });
        run("ip", &["-n", &self.switch, "link", "set", &port, state], "")?;
        self.wait_links(i..i + 1, up)
    }

    /// `tc qdisc replace dev eth0 root SPEC` in host i (e.g. "tbf rate 1mbit
    /// burst 32kbit latency 50ms"). Shapes host i's outgoing traffic only.
    pub fn qdisc(&self, i: usize, spec: &str) -> io::Result<()> {
        let mut args = vec!["-n", self.ns(i), "qdisc", "replace", "dev", "eth0", "root"];
        args.extend(spec.split_whitespace());
        run("tc", &args, "").map(drop)
    }

    /// `netem SPEC` as host i's root qdisc, e.g. "delay 50ms loss 10%".
    /// Fails if the kernel lacks netem; check `netem_supported()` first.
    pub fn netem(&self, i: usize, spec: &str) -> io::Result<()> {
        self.qdisc(i, &format!("netem {spec}"))
            .map_err(|e| match netem_supported() {
                true => e,
                false => io::Error::other(format!("{e} (kernel lacks CONFIG_NET_SCH_NETEM)")),
            })
    }

    /// Removes host i's root qdisc (netem or other); Ok if there was none.
    pub fn clear_netem(&self, i: usize) -> io::Result<()> {
        let args = ["-n", self.ns(i), "qdisc", "del", "dev", "eth0", "root"];
        match run("tc", &args, "") {
            Err(e) if e.to_string().contains("handle of zero") => Ok(()), // none set
            r => r.map(drop),
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting the switch destroys the veth pairs too. Errors are ignored:
        // drop must not panic, and some namespaces may never have been made.
        let names = self.hosts.iter().chain([&self.switch]);
        let lines: Vec<String> = names.map(|n| format!("netns del {n}")).collect();
        let _ = ip_batch(None, true, &lines);
    }
}
