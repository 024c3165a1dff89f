//! What every target shares: a runtime to drive the async decoders over an in-memory stream.

use std::future::Future;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Runs a decoder to completion (a slice never blocks, so timeouts never fire).
pub fn block_on<F: Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}
