//! `ferry pair` (a flow: the code, the user's y/n, the outcome), and how library replies print.

use std::time::Duration;

use anyhow::{bail, Result};
use ferry_core::control::command::{GrantInfo, Reached, RemoteAction};
use ferry_core::control::{Command, Reply};
use ferry_core::{Event, PairingState};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::front::Front;
use crate::out::{say, short, Out};

/// Prints which members a change reached.
pub fn report(out: &Out, reached: &[Reached]) {
    for r in reached {
        let m = &r.member;
        let who = if m.name.is_empty() {
            &m.short_id
        } else {
            &m.name
        };
        match &r.error {
            None => out.note(&format!("  told {who} ({})", m.short_id)),
            Some(e) => out.note(&format!(
                "  could not tell {who} ({}) now: {e}; it hears at the next contact with a member",
                m.short_id
            )),
        }
    }
}

/// `ferry grants`: who may do what here, and what members did.
pub fn print_grants(out: &Out, grants: &[GrantInfo], log: &[RemoteAction]) {
    if out.json {
        say!(
            "{}",
            json!({"type": "grants", "grants": grants, "log": log})
        );
        return;
    }
    if grants.is_empty() {
        say!(
            "No grants: members may read the library, nothing more (ferry grant NODE manage|send)."
        );
    }
    for g in grants {
        say!("{}  {}  {}", short(&g.node), g.name, g.capability);
    }
    if !log.is_empty() {
        say!("Members' commands here, newest first:");
    }
    for a in log {
        say!(
            "  {}  {} ({})  {}  {}",
            crate::out::ago((ferry_util::unix_now() - a.at).max(0)),
            a.name,
            short(&a.node),
            a.command,
            a.outcome
        );
    }
}

/// `ferry pair PEER --library L`: shows the code, asks y/n on stdin, follows to the end.
pub async fn pair(
    front: &Front,
    out: &Out,
    peer: String,
    library: String,
    wait: Duration,
) -> Result<i32> {
    let start = Command::Pair {
        peer,
        library: library.clone(),
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    };
    let Reply::Pairing { id } = front.call(start).await? else {
        bail!("the node answered something else than a pairing");
    };
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut asked = false;
    loop {
        tokio::select! {
            e = front.event() => match e {
                Some(Event::Pairing { pairing: p }) if p.id == id => {
                    out.event(&Event::Pairing { pairing: p.clone() });
                    match p.state {
                        PairingState::Confirm { .. } => asked = true,
                        PairingState::Done => {
                            if let Ok(Reply::Library { library }) =
                                front.call(Command::Members { library }).await
                            {
                                out.members(&library);
                            }
                            return Ok(0);
                        }
                        PairingState::Failed { .. } => return Ok(1),
                        _ => {}
                    }
                }
                Some(_) => {}
                None => return Ok(1),
            },
            line = stdin.next_line(), if asked => {
                let accept = matches!(line, Ok(Some(ref l)) if matches!(l.trim(), "y" | "yes"));
                // Another front end may have answered first: the first answer wins.
                if let Err(e) = front.call(Command::AnswerPairing { id: Some(id.clone()), accept }).await {
                    out.error(&e);
                }
                asked = false;
            }
        }
    }
}
