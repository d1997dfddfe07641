//! Who may hold a listener's handshake slots, and for how long.
//!
//! Anyone who reaches a peer port can open connections. A connection holds a slot only while it
//! handshakes, and only until its [`handshake_deadline`]. The pool is bounded per source address
//! and in total; when it is full, a new connection takes the slot of the **oldest handshake of
//! the source holding the most slots** (which is evicted and counted as rejected). So a flood
//! from one address only ever displaces its own connections, and a stranger can never keep an
//! authenticated peer out: the peer's fresh connection always gets a slot, and a peer's
//! established session never lives in this pool (it is admitted to a [`Gate`] of its own).
//!
//! ```text
//! accept ─▶ Gate::admit(ip) ─▶ handshake (≤ deadline, or evicted) ─▶ drop the Admission
//!                                           │ authenticated
//!                                           ▼
//!                                 sessions: a Gate of their own
//! ```

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// Handshakes in flight at once from one source address. Two cover a peer that redials while
/// its previous attempt lingers; on loopback every local process shares one address, so a local
/// flood displaces only its own attempts and each one of the peer's in turn gets a slot.
pub const HANDSHAKES_PER_SOURCE: usize = 2;

/// Handshakes in flight at once on one listener.
pub const HANDSHAKES_TOTAL: usize = 32;

/// The handshake deadline for a link whose heartbeat is `heartbeat`: half a heartbeat, at least
/// 50 ms and at most 250 ms.
///
/// The server's side of a handshake is one round trip (challenge out, hello in) and two HMACs:
/// well under a millisecond on loopback or a LAN. Half a heartbeat keeps a failed attempt
/// cheaper than the heartbeat the peer would miss; 250 ms bounds how long a stranger holds a
/// slot whatever the heartbeat; 50 ms leaves room for a loaded host's scheduling delays (a
/// peer whose handshake fails redials at its next heartbeat). It does not depend on the peer
/// timeout: that is how long a *peer* may be silent, not how long a stranger may hold a slot.
#[must_use]
pub fn handshake_deadline(heartbeat: Duration) -> Duration {
    (heartbeat / 2).clamp(Duration::from_millis(50), Duration::from_millis(250))
}

/// A bounded pool of slots, per source address and in total, where a newcomer evicts the
/// oldest holder of the busiest source when the pool is full. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct Gate {
    state: Arc<Mutex<State>>,
    total: usize,
    per_source: usize,
}

/// A held slot. Dropping it gives the slot back; [`Admission::evicted`] resolves when a
/// newcomer took it (the holder should then close its connection).
#[derive(Debug)]
pub struct Admission {
    id: u64,
    state: Arc<Mutex<State>>,
    evicted: oneshot::Receiver<()>,
}

/// A slot taken from another holder by [`Gate::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// The evicted holder's source address.
    pub source: IpAddr,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Oldest first.
    held: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    source: IpAddr,
    evict: oneshot::Sender<()>,
}

impl Gate {
    /// A pool of `total` slots, at most `per_source` of them per source address (both at least
    /// 1).
    #[must_use]
    pub fn new(total: usize, per_source: usize) -> Self {
        Self {
            state: Arc::default(),
            total: total.max(1),
            per_source: per_source.max(1),
        }
    }

    /// The handshake pool of a peer listener: [`HANDSHAKES_TOTAL`] slots,
    /// [`HANDSHAKES_PER_SOURCE`] per source.
    #[must_use]
    pub fn handshakes() -> Self {
        Self::new(HANDSHAKES_TOTAL, HANDSHAKES_PER_SOURCE)
    }

    /// Gives `source` a slot, always: when its source already holds `per_source` slots, its
    /// oldest is evicted; otherwise, when the pool is full, the oldest slot of the source holding
    /// the most is. Returns the evicted holder, if any (count it as a rejected connection).
    pub fn admit(&self, source: IpAddr) -> (Admission, Option<Evicted>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = st.held.iter().filter(|e| e.source == source).count();
        let victim = if mine >= self.per_source {
            st.held.iter().position(|e| e.source == source)
        } else if st.held.len() >= self.total {
            busiest(&st.held).and_then(|b| st.held.iter().position(|e| e.source == b))
        } else {
            None
        };
        let evicted = victim.map(|i| {
            let e = st.held.remove(i);
            let _ = e.evict.send(());
            Evicted { source: e.source }
        });
        let id = st.next;
        st.next += 1;
        let (tx, rx) = oneshot::channel();
        st.held.push(Entry {
            id,
            source,
            evict: tx,
        });
        drop(st);
        let admission = Admission {
            id,
            state: self.state.clone(),
            evicted: rx,
        };
        (admission, evicted)
    }

    /// Slots held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .len()
    }
}

impl Admission {
    /// Resolves once a newcomer has taken this slot.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }

    /// Runs `work` while the slot is held: `None` when the slot was taken first.
    pub async fn hold<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            out = work => Some(out),
            () = self.evicted() => None,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.held.retain(|e| e.id != self.id);
    }
}

/// The source holding the most slots; among equals, the one holding the oldest slot.
fn busiest(held: &[Entry]) -> Option<IpAddr> {
    let mut best: Option<(usize, IpAddr)> = None;
    for e in held {
        let n = held.iter().filter(|o| o.source == e.source).count();
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, e.source));
        }
    }
    best.map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn a_source_over_its_share_evicts_its_own_oldest() {
        let g = Gate::new(8, 2);
        let (mut a1, e) = g.admit(ip(1));
        assert_eq!(e, None);
        let (_a2, _) = g.admit(ip(1));
        let (_b, _) = g.admit(ip(2));
        let (_a3, e) = g.admit(ip(1));
        assert_eq!(e, Some(Evicted { source: ip(1) }));
        assert!(
            a1.evicted.try_recv().is_ok(),
            "the oldest of 127.0.0.1 went"
        );
        assert_eq!(g.held(), 3);
    }

    #[test]
    fn a_full_pool_evicts_from_the_busiest_source_and_a_newcomer_always_gets_in() {
        let g = Gate::new(4, 3);
        let mut flood: Vec<_> = (0..3).map(|_| g.admit(ip(9)).0).collect();
        let (mut quiet, _) = g.admit(ip(2));
        let (_peer, e) = g.admit(ip(1));
        assert_eq!(e, Some(Evicted { source: ip(9) }));
        assert!(
            quiet.evicted.try_recv().is_err(),
            "the quiet source keeps its slot"
        );
        assert!(flood[0].evicted.try_recv().is_ok());
        assert!(flood[1].evicted.try_recv().is_err());
        assert_eq!(g.held(), 4);
    }

    #[test]
    fn a_dropped_admission_gives_its_slot_back() {
        let g = Gate::new(1, 1);
        let (a, _) = g.admit(ip(1));
        drop(a);
        assert_eq!(g.held(), 0);
        let (_b, e) = g.admit(ip(2));
        assert_eq!(e, None);
    }

    #[test]
    fn the_deadline_is_half_a_heartbeat_within_its_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(handshake_deadline(ms(100)), ms(50));
        assert_eq!(handshake_deadline(ms(300)), ms(150));
        assert_eq!(handshake_deadline(ms(20)), ms(50));
        assert_eq!(handshake_deadline(Duration::from_secs(3600)), ms(250));
        assert_eq!(handshake_deadline(Duration::MAX), ms(250));
    }
}
