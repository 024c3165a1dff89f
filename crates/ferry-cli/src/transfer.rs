//! `ferry send` and `ferry transfers resume`: start a transfer on the node and follow it.

use anyhow::{bail, Result};
use ferry_core::control::{Command, Reply};
use ferry_core::{Event, TransferState};
use tokio::io::AsyncBufReadExt;

use crate::front::Front;
use crate::out::{short, Out};

pub async fn send(front: &Front, out: &Out, call: Command) -> Result<i32> {
    let Reply::Sent {
        transfer,
        to,
        localsend,
    } = front.call(call).await?
    else {
        bail!("the node answered something else than a send");
    };
    let keys = if localsend {
        "(LocalSend) — c cancel".to_string()
    } else {
        "— p pause, r resume, c cancel".into()
    };
    out.note(&format!(
        "Offering to {to} {keys} (then Enter) [{}]",
        short(&transfer.id)
    ));
    follow(front, out, &transfer.id).await
}

pub async fn resume(front: &Front, out: &Out, id: &str) -> Result<i32> {
    let Reply::Transfer { transfer, .. } = front.call(Command::Transfer { id: id.into() }).await?
    else {
        bail!("no transfer {id}");
    };
    // Resuming what already finished is not an error: say how it ended (a kill can land
    // between the last byte and the exit).
    if transfer.state == TransferState::Done {
        out.progress(&transfer);
        return Ok(0);
    }
    front
        .call(Command::Resume {
            id: transfer.id.clone(),
        })
        .await?;
    follow(front, out, &transfer.id).await
}

/// Prints a transfer's progress until it ends; stdin steers it. Exit code 0 only when done.
async fn follow(front: &Front, out: &Out, id: &str) -> Result<i32> {
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            e = front.event() => match e {
                Some(Event::Transfer { transfer }) if transfer.id == id => {
                    out.progress(&transfer);
                    if transfer.state.is_final() {
                        return Ok(if transfer.state == TransferState::Done { 0 } else { 1 });
                    }
                }
                Some(_) => {}
                None => return Ok(1),
            },
            line = stdin.next_line(), if stdin_open => {
                let id = id.to_string();
                let steer = match line.ok().flatten().as_deref().map(str::trim) {
                    Some("p" | "pause") => Some(Command::Pause { id }),
                    Some("r" | "resume") => Some(Command::Resume { id }),
                    Some("c" | "cancel") => Some(Command::Cancel { id }),
                    Some(_) => None,
                    None => {
                        stdin_open = false;
                        None
                    }
                };
                if let Some(c) = steer {
                    front.call(c).await?;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                let id8 = short(id);
                if front.attached() {
                    out.note(&format!("\nStopped following; it goes on in the running node (ferry transfers, ferry transfers cancel {id8})."));
                } else {
                    out.note(&format!("\nStopped. Resume later with: ferry transfers resume {id8}"));
                }
                return Ok(130);
            }
        }
    }
}
