//! `ferry send`, `ferry transfers`, and answering prompts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ferry_core::spacedrop::wire::TransferId;
use ferry_core::{Decision, Event, Node, NodeConfig, Target, TransferState};
use tokio::io::AsyncBufReadExt;

use crate::out::Out;

/// Finds a transfer by its id or a unique prefix of it.
fn find(node: &Node, id: &str) -> Result<TransferId> {
    let prefix = id.to_ascii_lowercase();
    let matches = node.spacedrop().transfers().into_iter();
    let one = the_one(matches.filter(|t| t.id.starts_with(&prefix)).collect(), id)?;
    TransferId::parse(&one.id).ok_or_else(|| anyhow!("bad transfer id"))
}

/// The only transfer an id (or prefix) matched.
fn the_one<T>(mut matches: Vec<T>, id: &str) -> Result<T> {
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!("no transfer {id}"),
        n => bail!("'{id}' matches {n} transfers; give more of the id"),
    }
}

pub async fn send(
    node: &Node,
    out: &Out,
    peer: &str,
    paths: Vec<PathBuf>,
    wait: Duration,
    pin: Option<String>,
) -> Result<i32> {
    // The sources first: a missing one is said at once, not after the peer was looked for.
    let paths = paths
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| p.display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    for p in &paths {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
    }
    let target: Target = peer.parse()?;
    let mut events = node.subscribe();
    let id = match resolve(node, &target, wait).await? {
        To::Ferry(peer) => {
            let id = node.spacedrop().send(peer, paths).await?;
            out.note(&format!(
                "Offering to {} — p pause, r resume, c cancel (then Enter) [{}]",
                node.p2p().peer(&peer).map(|p| p.name).unwrap_or_default(),
                &id.hex()[..8]
            ));
            id
        }
        To::LocalSend(device) => {
            let id = node
                .spacedrop()
                .send_localsend(&device.fingerprint, paths, pin)
                .await?;
            out.note(&format!(
                "Offering to {} (LocalSend, {}) — c cancel (then Enter) [{}]",
                device.alias,
                device.address,
                &id.hex()[..8]
            ));
            id
        }
    };
    follow(node, out, &id, &mut events).await
}

/// Whom a send goes to: a Ferry peer, or a LocalSend device.
enum To {
    Ferry(ferry_core::PeerId),
    LocalSend(ferry_core::spacedrop::LocalSendDevice),
}

/// A Ferry peer by address, name or fingerprint; failing that, a LocalSend device by alias,
/// certificate fingerprint or address. Both are looked for until `wait` is over.
async fn resolve(node: &Node, target: &Target, wait: Duration) -> Result<To> {
    let Target::Query(q) = target else {
        return Ok(To::Ferry(node.resolve(target, wait).await?));
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        match ferry_core::target::pick(q, &node.peers()) {
            Ok(p) => return Ok(To::Ferry(p)),
            Err(ferry_core::TargetError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Ok(d) = node.spacedrop().find_localsend(q) {
            return Ok(To::LocalSend(d));
        }
        if std::time::Instant::now() >= deadline {
            // The Ferry error says what was looked for and how to reach a peer by address.
            return Ok(To::Ferry(node.resolve(target, Duration::ZERO).await?));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn resume(node: &Node, out: &Out, id: &str) -> Result<i32> {
    let id = find(node, id)?;
    // Resuming what already finished is not an error: say how it ended (a kill can land
    // between the last byte and the exit).
    if let Some(t) = node
        .spacedrop()
        .transfers()
        .into_iter()
        .find(|t| t.id == id.hex() && t.state == TransferState::Done)
    {
        out.progress(&t);
        return Ok(0);
    }
    let mut events = node.subscribe();
    node.spacedrop().resume(&id)?;
    follow(node, out, &id, &mut events).await
}

/// Prints a transfer's progress until it ends; stdin steers it. Exit code 0 only when done.
async fn follow(
    node: &Node,
    out: &Out,
    id: &TransferId,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> Result<i32> {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let hex = id.hex();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(Event::Transfer { transfer }) if transfer.id == hex => {
                    out.progress(&transfer);
                    if transfer.state.is_final() {
                        return Ok(if transfer.state == TransferState::Done { 0 } else { 1 });
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return Ok(1),
            },
            line = stdin.next_line(), if stdin_open => match line.ok().flatten().as_deref().map(str::trim) {
                Some("p" | "pause") => node.spacedrop().pause(id)?,
                Some("r" | "resume") => node.spacedrop().resume(id)?,
                Some("c" | "cancel") => node.spacedrop().cancel(id)?,
                Some(_) => {}
                None => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => {
                out.note(&format!("\nStopped. Resume later with: ferry transfers resume {}", &hex[..8]));
                return Ok(130);
            }
        }
    }
}

pub fn list(cfg: &NodeConfig, out: &Out) -> Result<i32> {
    let path = cfg.data_dir.join("ferry.db");
    if !path.exists() {
        out.transfers(&[]);
        return Ok(0);
    }
    let store = ferry_core::spacedrop::store::Store::open(&path)?;
    let list: Vec<_> = store
        .summaries()?
        .into_iter()
        .map(ferry_core::spacedrop::info_from_summary)
        .collect();
    out.transfers(&list);
    Ok(0)
}

/// One stored transfer (ID or a unique prefix), with every file it renamed or failed. Reads
/// the database directly, like [`list`].
pub fn show(cfg: &NodeConfig, out: &Out, id: &str) -> Result<i32> {
    let path = cfg.data_dir.join("ferry.db");
    if !path.exists() {
        bail!("no transfer {id}");
    }
    let store = ferry_core::spacedrop::store::Store::open(&path)?;
    let prefix = id.to_ascii_lowercase();
    let matches = store.summaries()?.into_iter();
    let one = the_one(
        matches
            .filter(|t| t.id.hex().starts_with(&prefix))
            .collect(),
        id,
    )?;
    let tid = one.id;
    let failed = ferry_core::spacedrop::failed_files(&store, &tid, 0, usize::MAX)?;
    let renamed = ferry_core::spacedrop::renamed_files(&store, &tid, 0, usize::MAX)?;
    out.transfer_report(
        &ferry_core::spacedrop::info_from_summary(one),
        &renamed,
        &failed,
    );
    Ok(0)
}

pub fn cancel(node: &Node, out: &Out, id: &str) -> Result<()> {
    let id = find(node, id)?;
    node.spacedrop().cancel(&id)?;
    out.note("cancelled");
    Ok(())
}

/// Pause, resume or cancel a transfer of a running node.
pub fn act(node: &Node, cmd: &str, id: &str) -> Result<()> {
    let id = find(node, id)?;
    let s = node.spacedrop();
    match cmd {
        "pause" => s.pause(&id)?,
        "resume" => s.resume(&id)?,
        _ => s.cancel(&id)?,
    }
    Ok(())
}

/// `y`, `y DIR`, `accept ID DIR`, `n`, `reject ID`. Without an id there must be exactly one
/// open prompt.
pub fn answer(node: &Node, cmd: &str, arg: Option<&str>, more: Option<&str>) -> Result<()> {
    let prompts = node.spacedrop().prompts();
    let by_prefix = |p: &str| prompts.iter().find(|t| t.hex().starts_with(p)).copied();
    let (id, dir) = match arg.and_then(by_prefix) {
        Some(id) => (id, more),
        None => match prompts.as_slice() {
            [one] => (*one, arg),
            [] => bail!("no open prompt"),
            _ => bail!("several prompts are open; say which: accept ID or reject ID"),
        },
    };
    let decision = if matches!(cmd, "y" | "yes" | "accept") {
        Decision::Accept {
            dest: dir.map(|d| std::path::absolute(d).unwrap_or_else(|_| PathBuf::from(d))),
        }
    } else {
        Decision::Reject
    };
    node.spacedrop().answer(&id, decision)?;
    Ok(())
}
