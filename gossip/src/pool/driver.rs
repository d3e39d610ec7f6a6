//! The thin tokio shell around [`PoolCore`]: it reads the clock, waits on the socket, the
//! handle's commands and the core's next deadline, sends what the core wants sent, and
//! mirrors the core's events into the [`Pool`] handle's view and the metrics. No decision
//! is made here.

use super::*;

pub(super) struct Driver {
    pub(super) core: PoolCore,
    pub(super) transport: Transport,
    pub(super) events: Arc<dyn PoolEvents>,
    pub(super) members: Arc<RwLock<BTreeMap<MemberKey, Member>>>,
    pub(super) coordinates: Coordinates,
    /// Keyring operations asked through the handle, by token.
    pub(super) replies: HashMap<u64, oneshot::Sender<KeyOutcome>>,
    pub(super) next_token: u64,
    /// Who waits for the goodbyes to be out.
    pub(super) leaving: Option<oneshot::Sender<()>>,
    /// Where broadcast messages go.
    pub(super) broadcasts: tokio::sync::broadcast::Sender<Vec<u8>>,
}

/// The clock, read once per wake-up.
pub(super) fn now() -> Now {
    Now {
        at: Instant::now(),
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

impl Driver {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        let mut buffer = vec![0u8; 2048];
        self.drain().await;
        loop {
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                received = self.transport.recv(&mut buffer) => {
                    let Some((packet, from)) = received else { continue };
                    let _span = self.span("datagram").entered();
                    self.core.handle_datagram(now(), &packet, from);
                }
                _ = async { match deadline { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    let _span = self.span("timeout").entered();
                    self.core.handle_timeout(now());
                }
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let input = self.input(command);
                    let _span = self.span("input").entered();
                    self.core.handle_input(now(), input);
                }
            }
            if !self.drain().await {
                return;
            }
        }
    }

    /// A span for one round of the core (trace level: cheap unless asked for).
    fn span(&self, what: &'static str) -> tracing::Span {
        let pool = match self.core.local().pool {
            PoolKind::Lan => "lan",
            PoolKind::Wan => "wan",
        };
        tracing::trace_span!("gossip_round", pool, what)
    }

    /// A command from the handle, as the core's input (replies kept here).
    fn input(&mut self, command: Command) -> Input {
        match command {
            Command::Join(seeds) => Input::Join(seeds),
            Command::ForceLeave(keys) => Input::ForceLeave(keys),
            Command::Key(op, reply) => {
                self.next_token = self.next_token.wrapping_add(1);
                self.replies.insert(self.next_token, reply);
                Input::Key {
                    op,
                    token: self.next_token,
                }
            }
            Command::Leave(done) => {
                self.leaving = Some(done);
                Input::Leave
            }
            Command::Broadcast(payload) => Input::Broadcast(payload),
        }
    }

    /// Sends what the core wants sent and passes on what happened; false once the pool has
    /// left.
    async fn drain(&mut self) -> bool {
        while let Some(transmit) = self.core.poll_transmit() {
            self.transport.send(&transmit.to, transmit.packet).await;
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Member(key, member) => {
                    self.members.write().insert(key, member);
                }
                Event::Coordinate(key, Some(coordinate)) => {
                    self.coordinates.write().insert(key, coordinate);
                }
                Event::Coordinate(key, None) => {
                    self.coordinates.write().remove(&key);
                }
                Event::Dropped(reason) => self.events.dropped(reason),
                Event::Membership(status) => self.events.member(status),
                Event::Health(score) => self.events.health(score),
                Event::KeyOutcome(token, outcome) => {
                    if let Some(reply) = self.replies.remove(&token) {
                        // The asker may have given up waiting; nothing to do then.
                        let _ = reply.send(outcome);
                    }
                }
                Event::Broadcast(payload) => {
                    // Nobody listening is fine: the message is simply not wanted here.
                    let _ = self.broadcasts.send(payload);
                }
                Event::Left => {
                    if let Some(done) = self.leaving.take() {
                        let _ = done.send(());
                    }
                    return false;
                }
            }
        }
        true
    }
}
