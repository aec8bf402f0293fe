//! The agent's watch of its desired state: one `WatchDesiredState` stream held open, states
//! handed over as they come, and reconnects with the agent's backoff (full jitter, after the
//! coordinator's retry hint) whenever the stream breaks, closes or is refused. `muster-agent run`
//! drives it with its ledger; `muster-bench` drives the same loop for its simulated agents, so
//! that what it measures is this code, not a copy.

use std::time::Duration;

use muster_proto::v1::agent_service_client::AgentServiceClient;
use muster_proto::v1::{DesiredState, WatchDesiredStateRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The reconnect backoff's floor and ceiling (each delay is drawn below a ceiling that doubles
/// from the floor up to this one).
pub const RECONNECT_FLOOR: Duration = Duration::from_millis(200);
pub const RECONNECT_CEILING: Duration = Duration::from_secs(10);

/// What happened to the watch, besides a state received.
#[derive(Debug)]
pub enum WatchEvent<'a> {
    /// The stream opened; `again`: after a failure.
    Connected { again: bool },
    /// The coordinator closed the stream.
    Closed,
    /// The stream broke.
    Broke(&'a tonic::Status),
    /// The stream could not be opened; `attempt` in a row.
    Refused {
        status: &'a tonic::Status,
        attempt: u32,
    },
}

/// Who holds the watch: what it knows, what it does with a state, what it makes of the rest.
pub trait WatchHandler {
    /// The generation it holds (the coordinator sends only a newer one).
    fn known_generation(&self) -> u64;
    /// Takes a state; false to reconnect (it was not kept, and must be received again).
    fn receive(&mut self, state: DesiredState) -> bool;
    /// Hears of what else happened (logging, counting).
    fn event(&mut self, event: WatchEvent<'_>);
}

/// Holds the watch on the channel `channel` gives (the current one: it changes when the
/// certificate is renewed) until `shutdown`.
pub async fn watch(
    channel: impl Fn() -> Channel,
    handler: &mut impl WatchHandler,
    shutdown: &CancellationToken,
) {
    let mut attempt = 0u32;
    loop {
        let mut client = AgentServiceClient::new(channel())
            .max_decoding_message_size(muster_proto::MAX_DESIRED_STATE_BYTES);
        let request = WatchDesiredStateRequest {
            known_generation: handler.known_generation(),
            host_id: String::new(),
        };
        let opened = tokio::select! {
            opened = client.watch_desired_state(request) => opened,
            () = shutdown.cancelled() => return,
        };
        let mut refused = None;
        match opened {
            Ok(response) => {
                handler.event(WatchEvent::Connected { again: attempt > 0 });
                attempt = 0;
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        // Cancel-safe: `message` only waits for the next frame.
                        message = stream.message() => message,
                        () = shutdown.cancelled() => return,
                    };
                    match message {
                        Ok(Some(state)) => {
                            if !handler.receive(state) {
                                break;
                            }
                        }
                        Ok(None) => {
                            handler.event(WatchEvent::Closed);
                            break;
                        }
                        Err(status) => {
                            handler.event(WatchEvent::Broke(&status));
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                handler.event(WatchEvent::Refused {
                    status: &status,
                    attempt,
                });
                refused = Some(status);
            }
        }
        attempt += 1;
        let delay = muster_proto::daemon::backoff_after(
            refused.as_ref(),
            attempt,
            RECONNECT_FLOOR,
            RECONNECT_CEILING,
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
