//! `ferry library …`, `ferry members`, `ferry pair`, `ferry unpair`, and answering pairings in
//! a running node.

use std::time::Duration;

use anyhow::{bail, Result};
use ferry_core::library::wire::LibraryId;
use ferry_core::{Event, Libraries, Node, PairingState, Target};
use tokio::io::AsyncBufReadExt;

use crate::out::Out;

fn find(libs: &Libraries, query: &str) -> Result<LibraryId> {
    Ok(libs.find(query)?)
}

pub fn list(libs: &Libraries, out: &Out) {
    out.libraries(&libs.list());
}

pub fn create(libs: &Libraries, out: &Out, name: &str) -> Result<()> {
    let info = libs.create(name)?;
    out.library(&info);
    Ok(())
}

pub fn rename(libs: &Libraries, out: &Out, lib: &str, name: &str) -> Result<()> {
    let info = libs.rename(&find(libs, lib)?, name)?;
    out.library(&info);
    out.note("Members get the new name when they next meet this node.");
    Ok(())
}

pub fn members(libs: &Libraries, out: &Out, lib: &str) -> Result<()> {
    let info = libs.get(&find(libs, lib)?)?;
    out.members(&info);
    Ok(())
}

/// Prints which members a change reached.
fn report(out: &Out, reached: &[(ferry_core::MemberInfo, Result<(), String>)]) {
    for (m, r) in reached {
        let who = if m.name.is_empty() {
            &m.short_id
        } else {
            &m.name
        };
        match r {
            Ok(()) => out.note(&format!("  told {who} ({})", m.short_id)),
            Err(e) => out.note(&format!(
                "  could not tell {who} ({}) now: {e}; it hears at the next contact with a member",
                m.short_id
            )),
        }
    }
}

pub async fn delete(node: &Node, out: &Out, lib: &str, wait: Duration) -> Result<()> {
    let libs = node.libraries();
    let id = find(libs, lib)?;
    let info = libs.get(&id)?;
    if !info.removed {
        report(out, &libs.reach(&id, wait, None).await);
    }
    libs.delete(&id, wait).await?;
    out.note(&format!(
        "Left and deleted library \"{}\" on this device.",
        info.name
    ));
    Ok(())
}

pub async fn unpair(node: &Node, out: &Out, who: &str, lib: &str, wait: Duration) -> Result<()> {
    let libs = node.libraries();
    let id = find(libs, lib)?;
    let info = libs.get(&id)?;
    let q = who.to_lowercase();
    let hits: Vec<_> = info
        .members
        .iter()
        .filter(|m| !m.me)
        .filter(|m| m.name.to_lowercase() == q || m.node.matches_prefix(&q))
        .collect();
    let member = match hits.as_slice() {
        [one] => (*one).clone(),
        [] => bail!("no member {who} in \"{}\" (see: ferry members)", info.name),
        _ => bail!("{who} matches several members; give more of the fingerprint"),
    };
    let info = libs.remove_member(&id, &member.node)?;
    out.library(&info);
    report(out, &libs.reach(&id, wait, Some(member.node)).await);
    Ok(())
}

/// `ferry pair PEER --library L`: shows the code, asks y/n on stdin, follows to the end.
pub async fn pair(node: &Node, out: &Out, peer: &str, lib: &str, wait: Duration) -> Result<i32> {
    let libs = node.libraries();
    let id = find(libs, lib)?;
    let peer = node.resolve(&peer.parse::<Target>()?, wait).await?;
    let mut events = node.subscribe();
    let pairing = libs.pair(peer, &id)?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut asked = false;
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(Event::Pairing { pairing: p }) if p.id == pairing => {
                    out.event(&Event::Pairing { pairing: p.clone() });
                    match p.state {
                        PairingState::Confirm { .. } => asked = true,
                        PairingState::Done => {
                            if let Ok(info) = libs.get(&id) {
                                out.members(&info);
                            }
                            return Ok(0);
                        }
                        PairingState::Failed { .. } => return Ok(1),
                        _ => {}
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return Ok(1),
            },
            line = stdin.next_line(), if asked => {
                let accept = matches!(line, Ok(Some(ref l)) if matches!(l.trim(), "y" | "yes"));
                libs.answer_pairing(&pairing, accept)?;
                asked = false;
            }
        }
    }
}

/// `y`/`n` typed into a running node, when the open question is a pairing: answers it.
/// Returns false when no pairing is waiting for this node's user.
pub fn answer(node: &Node, cmd: &str, id: Option<&str>) -> Result<bool> {
    let waiting: Vec<_> = node
        .libraries()
        .pairings()
        .into_iter()
        .filter(|p| matches!(p.state, PairingState::Confirm { .. }))
        .filter(|p| id.is_none_or(|i| p.id.starts_with(i)))
        .collect();
    let p = match waiting.as_slice() {
        [] => return Ok(false),
        [one] => one,
        _ => bail!("several pairings are open; say which: y ID or n ID"),
    };
    let accept = matches!(cmd, "y" | "yes" | "accept");
    node.libraries().answer_pairing(&p.id, accept)?;
    Ok(true)
}
