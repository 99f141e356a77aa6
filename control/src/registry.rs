//! The worker registry: which workers there are, whether each is live, and which plan versions
//! each holds. Pure: every method that depends on time takes `now`, and none makes a call; the
//! driver (`service/workers.rs`) asks the daemons what the registry wants to know and tells it
//! the answers.
//!
//! A worker is known by its name and its daemon's *incarnation* (random, new at every start of
//! the daemon). It is **lost** when it sent no heartbeat for [`LOST_AFTER`] intervals and did
//! not answer a direct call either, or when an invocation lost it; it is **live** again only
//! after a heartbeat or a registration of the same incarnation, or a new registration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A worker that missed this many heartbeat intervals is lost (if it does not answer a direct
/// call either).
pub const LOST_AFTER: u32 = 3;

/// A plan version a daemon reports holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldPlan {
    pub(crate) workflow: String,
    pub(crate) version: u64,
    /// It is being dropped (it runs its last invocations).
    pub(crate) dropping: bool,
    /// The SHA-256 digest of the plan, as the planner encoded it.
    pub(crate) digest: Vec<u8>,
}

/// A registered worker.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    /// Its daemon's incarnation (new at every start).
    pub(crate) incarnation: u64,
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) quic_addr: Option<SocketAddr>,
    pub(crate) slots: u32,
    pub(crate) last_seen: Instant,
    /// It is lost ([`Registry::is_lost`]).
    pub(crate) noted_lost: bool,
    /// A direct call asks whether it still answers (it sent no heartbeat for a while).
    pub(crate) probing: bool,
    /// Since when it is live (registered, or back after it was lost).
    pub(crate) live_since: Instant,
    /// The versions its daemon holds and does not drop, with their digests (its latest
    /// report, and what was installed on it since).
    pub(crate) held: BTreeMap<(String, u64), Vec<u8>>,
    /// Every version its daemon reported, dropping ones too.
    pub(crate) reported: Vec<HeldPlan>,
    /// Its daemon started again and the others are being told: nothing is installed on it
    /// until they know (their old connections to it must not fail its new invocations).
    pub(crate) restarting: bool,
    /// What its last heartbeat said it runs and holds.
    pub(crate) load: Load,
}

/// What a worker's heartbeat says it runs and holds (for `faasflow status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) instances: u32,
    pub(crate) calls: u32,
    pub(crate) arena_used: u64,
    pub(crate) arena_bytes: u64,
}

/// How a registration relates to what the registry knew of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// A worker it did not know.
    New,
    /// The same daemon again.
    Again,
    /// The same daemon, which was lost.
    Back,
    /// A new daemon under a known name: it holds only what it reports.
    Restarted,
}

impl Joined {
    /// How the log says it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Joined::New => "registered",
            Joined::Again => "registered again",
            Joined::Back => "is back: registered again after it was lost",
            Joined::Restarted => "restarted: it holds what it reports and gets every version it should hold",
        }
    }
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// No worker of that name and incarnation: the daemon must register again.
    Unknown,
    /// Noted.
    Known,
    /// Noted, and the worker, which was lost, is live again.
    Back,
}

/// What one look over the workers found ([`Registry::look`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Look {
    /// The registry was not looked at for this long, more than a loss window: nobody can be
    /// found silent, so every worker got a new window.
    pub(crate) not_run_for: Option<Duration>,
    /// Workers silent for a whole loss window, with how long: ask each directly
    /// ([`Registry::answered`], [`Registry::unanswered`]).
    pub(crate) silent: Vec<(String, Duration)>,
}

/// The workers of a cluster.
#[derive(Debug)]
pub(crate) struct Registry {
    workers: BTreeMap<String, Worker>,
    /// The heartbeat interval workers were given.
    interval: Duration,
    /// When [`Registry::look`] last ran.
    last_look: Option<Instant>,
}

impl Registry {
    pub(crate) fn new(interval: Duration) -> Self {
        Registry {
            workers: BTreeMap::new(),
            interval,
            last_look: None,
        }
    }

    /// The heartbeat interval workers were given.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// How long a worker may be silent before it is asked directly.
    pub(crate) fn loss_window(&self) -> Duration {
        self.interval * LOST_AFTER
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Worker> {
        self.workers.get(name)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Worker> {
        self.workers.get_mut(name)
    }

    /// Every worker, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Worker)> {
        self.workers.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The live workers, by name.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&String, &Worker)> {
        self.workers.iter().filter(|(_, w)| !w.noted_lost)
    }

    /// Whether worker `w` is lost: a look found it silent and it did not answer a direct call,
    /// or an invocation lost it ([`Registry::mark_lost`]).
    pub(crate) fn is_lost(w: &Worker) -> bool {
        w.noted_lost
    }

    /// The address of another live daemon that registered under `name` (another incarnation
    /// at another address), which the caller must ask before it lets a new one take the name.
    pub(crate) fn other_daemon(&self, name: &str, incarnation: u64, grpc_addr: SocketAddr) -> Option<SocketAddr> {
        match self.workers.get(name) {
            Some(w) if w.incarnation != incarnation && w.grpc_addr != grpc_addr && !w.noted_lost => Some(w.grpc_addr),
            _ => None,
        }
    }

    /// Registers a worker's daemon.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        &mut self,
        name: &str,
        incarnation: u64,
        grpc_addr: SocketAddr,
        quic_addr: Option<SocketAddr>,
        slots: u32,
        plans: Vec<HeldPlan>,
        now: Instant,
    ) -> Joined {
        let joined = match self.workers.get(name) {
            None => Joined::New,
            Some(w) if w.incarnation != incarnation => Joined::Restarted,
            Some(w) if w.noted_lost => Joined::Back,
            Some(_) => Joined::Again,
        };
        let live_since = match (joined, self.workers.get(name)) {
            (Joined::Again, Some(w)) => w.live_since,
            _ => now,
        };
        self.workers.insert(
            name.to_owned(),
            Worker {
                incarnation,
                grpc_addr,
                quic_addr,
                slots,
                last_seen: now,
                noted_lost: false,
                probing: false,
                restarting: joined == Joined::Restarted,
                live_since,
                held: held_set(&plans),
                reported: plans,
                load: Load::default(),
            },
        );
        joined
    }

    /// A worker as a planner's state directory kept it: live from `now` (a new loss window),
    /// holding `held` (the versions kept that name it), until its heartbeats say otherwise.
    pub(crate) fn restore(
        &mut self,
        name: &str,
        stored: &faasflow_rpc::convert::state::StoredWorker,
        held: BTreeMap<(String, u64), Vec<u8>>,
        now: Instant,
    ) {
        let reported = held
            .iter()
            .map(|((workflow, version), digest)| HeldPlan {
                workflow: workflow.clone(),
                version: *version,
                dropping: false,
                digest: digest.clone(),
            })
            .collect();
        self.workers.insert(
            name.to_owned(),
            Worker {
                incarnation: stored.incarnation,
                grpc_addr: stored.grpc_addr,
                quic_addr: stored.quic_addr,
                slots: stored.slots,
                last_seen: now,
                noted_lost: false,
                probing: false,
                restarting: false,
                live_since: now,
                held,
                reported,
                load: Load::default(),
            },
        );
    }

    /// A heartbeat of worker `name`'s daemon `incarnation`, holding `plans`.
    pub(crate) fn beat(&mut self, name: &str, incarnation: u64, plans: Vec<HeldPlan>, now: Instant) -> Beat {
        match self.workers.get_mut(name) {
            Some(w) if w.incarnation == incarnation => {
                w.last_seen = now;
                w.held = held_set(&plans);
                w.reported = plans;
                if w.noted_lost {
                    w.noted_lost = false;
                    w.live_since = now;
                    Beat::Back
                } else {
                    Beat::Known
                }
            }
            _ => Beat::Unknown,
        }
    }

    /// Looks over the workers: those silent for a whole loss window are to be asked directly
    /// (once: they are marked as being asked). When the registry itself was not looked at for
    /// a whole window (the planner was stopped or starved), heartbeats could not be taken
    /// meanwhile, so every live worker gets a new window instead.
    pub(crate) fn look(&mut self, now: Instant) -> Look {
        let window = self.loss_window();
        let gap = self.last_look.map(|t| now.saturating_duration_since(t));
        self.last_look = Some(now);
        let mut look = Look::default();
        if let Some(gap) = gap.filter(|g| *g > window) {
            look.not_run_for = Some(gap);
            for w in self.workers.values_mut().filter(|w| !w.noted_lost) {
                w.last_seen = w.last_seen.max(now);
            }
        }
        for (name, w) in self.workers.iter_mut() {
            let silent = now.saturating_duration_since(w.last_seen);
            if silent > window && !w.noted_lost && !w.probing {
                w.probing = true;
                look.silent.push((name.clone(), silent));
            }
        }
        look
    }

    /// Worker `name`, asked because it was silent, answered: it gets a new window.
    pub(crate) fn answered(&mut self, name: &str, now: Instant) {
        if let Some(w) = self.workers.get_mut(name) {
            w.probing = false;
            w.last_seen = w.last_seen.max(now);
        }
    }

    /// Worker `name`, asked because it was silent, did not answer: it is lost unless a
    /// heartbeat came meanwhile. Returns how long it was silent when it is found lost.
    pub(crate) fn unanswered(&mut self, name: &str, now: Instant) -> Option<Duration> {
        let window = self.loss_window();
        let w = self.workers.get_mut(name)?;
        w.probing = false;
        let silence = now.saturating_duration_since(w.last_seen);
        if silence <= window {
            return None;
        }
        w.noted_lost = true;
        Some(silence)
    }

    /// An invocation lost worker `name`: it is lost until it sends heartbeats again. True when
    /// it was not lost before.
    pub(crate) fn mark_lost(&mut self, name: &str, now: Instant) -> bool {
        let lost_for = self.interval * (LOST_AFTER + 1);
        let Some(w) = self.workers.get_mut(name) else {
            return false;
        };
        if let Some(t) = now.checked_sub(lost_for) {
            w.last_seen = w.last_seen.min(t);
        }
        !std::mem::replace(&mut w.noted_lost, true)
    }
}

/// The versions a daemon reports holding and not dropping.
fn held_set(plans: &[HeldPlan]) -> BTreeMap<(String, u64), Vec<u8>> {
    plans
        .iter()
        .filter(|p| !p.dropping)
        .map(|p| ((p.workflow.clone(), p.version), p.digest.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn held(workflow: &str, version: u64, dropping: bool) -> HeldPlan {
        HeldPlan {
            workflow: workflow.to_owned(),
            version,
            dropping,
            digest: vec![version as u8],
        }
    }

    /// A registry with workers `a` and `b` registered at `t0`.
    fn two(t0: Instant) -> Registry {
        let mut r = Registry::new(INTERVAL);
        assert_eq!(r.join("a", 1, addr(1), None, 2, vec![], t0), Joined::New);
        assert_eq!(r.join("b", 2, addr(2), None, 2, vec![], t0), Joined::New);
        r
    }

    #[test]
    fn a_silent_worker_is_asked_once_and_lost_only_if_it_does_not_answer() {
        let t0 = Instant::now();
        let mut r = two(t0);
        assert_eq!(r.look(t0).silent, vec![]);
        // `a` keeps beating, `b` goes quiet.
        let mut t = t0;
        for _ in 0..3 {
            t += INTERVAL;
            assert_eq!(r.beat("a", 1, vec![], t), Beat::Known);
            assert_eq!(r.look(t).silent, vec![]);
        }
        t += INTERVAL;
        r.beat("a", 1, vec![], t);
        let look = r.look(t);
        assert_eq!(look.silent, vec![("b".to_owned(), INTERVAL * 4)]);
        assert_eq!(look.not_run_for, None);
        // Being asked, it is not asked again at the next look.
        t += INTERVAL;
        r.beat("a", 1, vec![], t);
        assert_eq!(r.look(t).silent, vec![]);
        // It answers: a new window, not lost.
        r.answered("b", t);
        assert!(!Registry::is_lost(r.get("b").unwrap()));
        assert_eq!(r.live().count(), 2);
        // Silent again for a whole window (the registry looked at every interval), and this
        // time no answer: lost.
        for _ in 0..4 {
            t += INTERVAL;
            r.beat("a", 1, vec![], t);
            if t < t0 + INTERVAL * 9 {
                assert_eq!(r.look(t).silent, vec![]);
            }
        }
        assert_eq!(r.look(t).silent.len(), 1);
        assert_eq!(r.unanswered("b", t), Some(INTERVAL * 4));
        assert!(Registry::is_lost(r.get("b").unwrap()));
        assert_eq!(r.live().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_heartbeat_that_came_while_asking_keeps_the_worker() {
        let t0 = Instant::now();
        let mut r = two(t0);
        r.look(t0);
        let mut t = t0;
        for _ in 0..4 {
            t += INTERVAL;
            r.beat("a", 1, vec![], t);
            r.look(t);
        }
        assert!(r.get("b").unwrap().probing, "b is being asked");
        r.beat("b", 2, vec![], t + INTERVAL);
        assert_eq!(r.unanswered("b", t + INTERVAL), None);
        assert!(!Registry::is_lost(r.get("b").unwrap()));
    }

    #[test]
    fn a_registry_not_looked_at_for_a_window_gives_every_worker_a_new_one() {
        let t0 = Instant::now();
        let mut r = two(t0);
        r.look(t0);
        // The planner was frozen for 10 intervals: nobody could beat.
        let t = t0 + INTERVAL * 10;
        let look = r.look(t);
        assert_eq!(look.not_run_for, Some(INTERVAL * 10));
        assert_eq!(
            look.silent,
            vec![],
            "no worker is found silent after the planner itself stopped"
        );
        // One interval later, still nobody is silent for a window.
        assert_eq!(r.look(t + INTERVAL).silent, vec![]);
    }

    #[test]
    fn a_lost_worker_comes_back_with_a_heartbeat_of_the_same_daemon_only() {
        let t0 = Instant::now();
        let mut r = two(t0);
        assert!(r.mark_lost("b", t0));
        assert!(!r.mark_lost("b", t0), "lost once");
        assert_eq!(
            r.beat("b", 99, vec![], t0),
            Beat::Unknown,
            "another daemon must register"
        );
        assert!(Registry::is_lost(r.get("b").unwrap()));
        // A look does not bring it back either.
        r.look(t0 + INTERVAL);
        assert!(Registry::is_lost(r.get("b").unwrap()));
        let t = t0 + INTERVAL * 2;
        assert_eq!(r.beat("b", 2, vec![held("wf", 3, false)], t), Beat::Back);
        let b = r.get("b").unwrap();
        assert!(!Registry::is_lost(b));
        assert_eq!(b.live_since, t);
        assert_eq!(b.held.keys().collect::<Vec<_>>(), [&("wf".to_owned(), 3)]);
    }

    #[test]
    fn registrations_say_how_the_daemon_relates_to_the_worker() {
        let t0 = Instant::now();
        let mut r = two(t0);
        let t = t0 + INTERVAL;
        assert_eq!(r.join("a", 1, addr(1), None, 2, vec![], t), Joined::Again);
        assert_eq!(
            r.get("a").unwrap().live_since,
            t0,
            "the same daemon keeps its time live"
        );
        r.mark_lost("a", t);
        assert_eq!(r.join("a", 1, addr(1), None, 2, vec![], t), Joined::Back);
        let plans = vec![held("wf", 1, false), held("wf", 2, true)];
        assert_eq!(r.join("a", 7, addr(3), None, 2, plans, t), Joined::Restarted);
        let a = r.get("a").unwrap();
        assert!(a.restarting);
        assert_eq!(a.held.len(), 1, "a version being dropped is not held");
        assert_eq!(a.reported.len(), 2);
    }

    #[test]
    fn a_name_is_taken_only_by_another_live_daemon_elsewhere() {
        let t0 = Instant::now();
        let mut r = two(t0);
        assert_eq!(r.other_daemon("a", 1, addr(9)), None, "the same daemon");
        assert_eq!(
            r.other_daemon("a", 5, addr(1)),
            None,
            "the same address: the old process is gone"
        );
        assert_eq!(r.other_daemon("a", 5, addr(9)), Some(addr(1)));
        r.mark_lost("a", t0);
        assert_eq!(r.other_daemon("a", 5, addr(9)), None, "a lost worker's name is free");
        assert_eq!(r.other_daemon("c", 5, addr(9)), None);
    }
}
