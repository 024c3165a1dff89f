//! The data stream's handler (protocol 4): it claims the job an accepted offer left for it,
//! keyed by the proven sender and the transfer id, and hands the records to Spaceblock's
//! receiver; outcomes go back to the reception's control flow through the job's channels.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ferry_block::names::Os;
use ferry_block::record::RecordError;
use ferry_block::recv::{receive_files, RecvError};
use ferry_p2p::router::{BoxFuture, Incoming, Protocol};
use ferry_p2p::wire::expect_frame;
use ferry_p2p::{Code, StreamError};
use ferry_util::lock;

use super::state::SpacedropState;
use super::wire::{DataStart, DATA_ID, MAX_CONTROL, VERSION};

/// How long the sender has to say which transfer a data stream carries.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct DataProtocol(pub Arc<SpacedropState>);

impl Protocol for DataProtocol {
    fn id(&self) -> u16 {
        DATA_ID
    }
    fn versions(&self) -> RangeInclusive<u16> {
        VERSION..=VERSION
    }
    fn handle<'a>(&'a self, s: &'a mut Incoming) -> BoxFuture<'a, Result<(), StreamError>> {
        Box::pin(async move {
            let start: DataStart =
                expect_frame(&mut s.recv, MAX_CONTROL, START_TIMEOUT, "data start").await?;
            // Keyed by the *proven* peer: nobody else can feed another peer's transfer.
            let job = lock(&self.0.data_jobs).remove(&(s.peer, start.transfer));
            let Some(job) = job else {
                return Err(StreamError::Protocol(
                    "data for no accepted transfer".into(),
                ));
            };
            let r = receive_files(
                &mut s.recv,
                &job.plan,
                Os::current(),
                job.journal,
                job.outcomes,
                &job.received,
                job.cancel,
            )
            .await;
            let code = match &r {
                Ok(()) => None,
                Err(RecvError::Disk { .. }) => Some((Code::Refused, "disk")),
                Err(RecvError::Stopped) => Some((Code::Cancelled, "stopped")),
                // The stream was reset or its connection lost: not the peer's data at fault.
                Err(RecvError::Record(RecordError::Io(_))) => {
                    Some((Code::Cancelled, "stream reset or connection lost"))
                }
                Err(_) => Some((Code::ProtocolError, "bad data")),
            };
            let _ = job.done.send(r);
            match code {
                None => Ok(()),
                Some((code, why)) => Err(StreamError::Local(code, why)),
            }
        })
    }
}
