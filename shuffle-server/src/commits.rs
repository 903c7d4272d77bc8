//! Which map attempts of one shuffle are committed: the state behind begin, seal,
//! commit, abandon and the selection a fetch serves. Pure: no I/O, no locks; the
//! registry holds it under the shuffle's lock and does the disk writes between
//! [`CommitState::seal`] and [`CommitState::commit`].
//!
//! The rules it keeps (property-tested below):
//! - an attempt is selected only once committed, and a map id is selected from exactly
//!   one attempt (the epoch that committed it);
//! - an abandoned epoch never commits, and a sealed epoch (its commit under way or
//!   done) is never abandoned;
//! - `All` and `MapIndexRange` serve, per map index, the attempt that committed first.

use std::collections::{HashMap, HashSet};

use sluice_proto::MapFilter;

/// One push of a map attempt: blocks are tagged with it, and a commit binds a map id to
/// exactly one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Epoch(pub u32);

/// A map attempt's id (Spark: the task attempt id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MapId(pub u64);

/// Why a step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitRefused {
    AlreadyCommitted,
    /// Another push of the same map id is committing.
    Committing,
    Abandoned,
}

/// The commit state of one shuffle.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    next_epoch: u32,
    /// Committed epoch of each map id.
    by_map_id: HashMap<MapId, Epoch>,
    /// The attempt that committed first for each map index (for non-Spark readers).
    first_by_index: HashMap<u32, MapId>,
    /// Map ids whose commit is being written.
    committing: HashSet<MapId>,
    /// Epochs whose commit has started (and may have finished): never abandoned.
    sealed: HashSet<Epoch>,
    /// Epochs given up (their pushes ended without a commit): never committed.
    abandoned: HashSet<Epoch>,
}

/// Which blocks a fetch serves: the committed (map id, epoch) pairs it selected.
#[derive(Debug)]
pub(crate) struct Selection {
    epochs: HashMap<MapId, Epoch>,
    /// Requested map ids that are not committed here, sorted.
    pub missing: Vec<u64>,
}

impl Selection {
    pub fn contains(&self, map_id: u64, epoch: u32) -> bool {
        self.epochs.get(&MapId(map_id)) == Some(&Epoch(epoch))
    }

    /// The selected (map id, epoch) pairs, by map id.
    pub fn maps(&self) -> Vec<(u64, u32)> {
        let mut maps: Vec<_> = self.epochs.iter().map(|(m, e)| (m.0, e.0)).collect();
        maps.sort_unstable();
        maps
    }
}

impl CommitState {
    /// The state a recovered shuffle starts with: its logged commits, in log order (the
    /// first of a map index is its first), and epochs above every one seen on disk.
    pub fn recovered(
        commits: impl IntoIterator<Item = (MapId, u32, Epoch)>,
        max_epoch: Option<u32>,
    ) -> Self {
        let mut state = Self {
            next_epoch: max_epoch.map_or(0, |e| e.wrapping_add(1)),
            ..Self::default()
        };
        for (map_id, map_index, epoch) in commits {
            state.add(map_id, map_index, epoch);
        }
        state
    }

    fn add(&mut self, map_id: MapId, map_index: u32, epoch: Epoch) {
        self.by_map_id.insert(map_id, epoch);
        self.first_by_index.entry(map_index).or_insert(map_id);
    }

    /// Map ids committed.
    pub fn committed_maps(&self) -> usize {
        self.by_map_id.len()
    }

    /// A new push of `map_id`: the epoch its blocks are tagged with.
    pub fn begin(&mut self, map_id: MapId) -> Result<Epoch, CommitRefused> {
        if self.by_map_id.contains_key(&map_id) {
            return Err(CommitRefused::AlreadyCommitted);
        }
        let epoch = Epoch(self.next_epoch);
        self.next_epoch = self.next_epoch.wrapping_add(1);
        Ok(epoch)
    }

    /// The push with `epoch` starts its commit: from here on it can no longer be
    /// abandoned. Follow with [`commit`](Self::commit) once durable, or
    /// [`unseal`](Self::unseal) if writing failed.
    pub fn seal(&mut self, map_id: MapId, epoch: Epoch) -> Result<(), CommitRefused> {
        if self.by_map_id.contains_key(&map_id) {
            return Err(CommitRefused::AlreadyCommitted);
        }
        if self.abandoned.contains(&epoch) {
            return Err(CommitRefused::Abandoned);
        }
        if !self.committing.insert(map_id) {
            return Err(CommitRefused::Committing);
        }
        self.sealed.insert(epoch);
        Ok(())
    }

    /// The sealed push's commit is durable: its blocks become visible.
    pub fn commit(&mut self, map_id: MapId, map_index: u32, epoch: Epoch) {
        self.committing.remove(&map_id);
        self.add(map_id, map_index, epoch);
    }

    /// The sealed push's commit failed: the map may be pushed again.
    pub fn unseal(&mut self, map_id: MapId, epoch: Epoch) {
        self.committing.remove(&map_id);
        self.sealed.remove(&epoch);
    }

    /// Gives up the push with `epoch`: whether it may be reclaimed. False if its commit
    /// has started (it may be durable already); once true the epoch never commits.
    pub fn abandon(&mut self, epoch: Epoch) -> bool {
        !self.sealed.contains(&epoch) && self.abandoned.insert(epoch)
    }

    /// The committed attempts a fetch with `filter` reads.
    pub fn select(&self, filter: &MapFilter) -> Selection {
        let mut epochs = HashMap::new();
        let mut missing = Vec::new();
        match filter {
            MapFilter::MapIds(ids) => {
                for &id in ids {
                    match self.by_map_id.get(&MapId(id)) {
                        Some(&epoch) => {
                            epochs.insert(MapId(id), epoch);
                        }
                        None => missing.push(id),
                    }
                }
                missing.sort_unstable();
                missing.dedup();
            }
            MapFilter::All | MapFilter::MapIndexRange { .. } => {
                let in_range = |index: u32| match filter {
                    MapFilter::MapIndexRange { start, end } => (*start..*end).contains(&index),
                    _ => true,
                };
                for (&index, &id) in &self.first_by_index {
                    if in_range(index) {
                        epochs.insert(id, self.by_map_id[&id]);
                    }
                }
            }
        }
        Selection { epochs, missing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One step a push, a commit or a fetch can take.
    #[derive(Debug, Clone)]
    enum Op {
        /// A push of map `map` (map index `map % 3`, so indexes are shared).
        Begin {
            map: u64,
        },
        /// The `push`-th push so far seals, then commits (or fails).
        Commit {
            push: usize,
            fails: bool,
        },
        Abandon {
            push: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u64).prop_map(|map| Op::Begin { map }),
            (0..40usize, any::<bool>()).prop_map(|(push, fails)| Op::Commit { push, fails }),
            (0..40usize).prop_map(|push| Op::Abandon { push }),
        ]
    }

    proptest! {
        #[test]
        fn any_order_keeps_the_rules(ops in prop::collection::vec(op(), 1..60)) {
            let mut state = CommitState::default();
            // Every push begun: (map id, epoch).
            let mut pushes: Vec<(MapId, Epoch)> = Vec::new();
            let mut abandoned: HashSet<Epoch> = HashSet::new();
            // What committed, in order: (map id, map index, epoch).
            let mut committed: Vec<(MapId, u32, Epoch)> = Vec::new();
            for op in ops {
                match op {
                    Op::Begin { map } => {
                        let was = committed.iter().any(|c| c.0 == MapId(map));
                        match state.begin(MapId(map)) {
                            Ok(epoch) => {
                                prop_assert!(!was);
                                prop_assert!(pushes.iter().all(|p| p.1 != epoch), "epoch reused");
                                pushes.push((MapId(map), epoch));
                            }
                            Err(e) => prop_assert_eq!((was, e), (true, CommitRefused::AlreadyCommitted)),
                        }
                    }
                    Op::Commit { push, fails } => {
                        let Some(&(map, epoch)) = pushes.get(push) else { continue };
                        if state.seal(map, epoch).is_ok() {
                            prop_assert!(!abandoned.contains(&epoch), "an abandoned epoch sealed");
                            if fails {
                                state.unseal(map, epoch);
                            } else {
                                let index = (map.0 % 3) as u32;
                                state.commit(map, index, epoch);
                                committed.push((map, index, epoch));
                            }
                        }
                    }
                    Op::Abandon { push } => {
                        let Some(&(_, epoch)) = pushes.get(push) else { continue };
                        if state.abandon(epoch) {
                            prop_assert!(committed.iter().all(|c| c.2 != epoch), "a committed epoch abandoned");
                            abandoned.insert(epoch);
                        }
                    }
                }
                // Each map id commits once, from one epoch, never an abandoned one.
                let mut maps = HashSet::new();
                for c in &committed {
                    prop_assert!(maps.insert(c.0), "map {:?} committed twice", c.0);
                    prop_assert!(!abandoned.contains(&c.2));
                }
                // Named map ids: exactly the committed attempt of each, the rest missing.
                let ids: Vec<u64> = (0..6).collect();
                let s = state.select(&MapFilter::MapIds(ids.clone()));
                for &(map, epoch) in &pushes {
                    let is_committed = committed.iter().any(|c| c.0 == map && c.2 == epoch);
                    prop_assert_eq!(s.contains(map.0, epoch.0), is_committed);
                }
                let want_missing: Vec<u64> = ids.into_iter()
                    .filter(|&m| committed.iter().all(|c| c.0 != MapId(m)))
                    .collect();
                prop_assert_eq!(&s.missing, &want_missing);
                // All: per map index, the first attempt to commit.
                let all = state.select(&MapFilter::All);
                let mut first: HashMap<u32, (MapId, Epoch)> = HashMap::new();
                for c in &committed {
                    first.entry(c.1).or_insert((c.0, c.2));
                }
                for &(map, epoch) in &pushes {
                    let want = first.values().any(|f| *f == (map, epoch));
                    prop_assert_eq!(all.contains(map.0, epoch.0), want);
                }
                let range = state.select(&MapFilter::MapIndexRange { start: 1, end: 2 });
                for &(map, epoch) in &pushes {
                    let want = first.get(&1) == Some(&(map, epoch));
                    prop_assert_eq!(range.contains(map.0, epoch.0), want);
                }
            }
        }
    }

    #[test]
    fn recovered_state_serves_the_log_and_epochs_start_above_it() {
        let state =
            CommitState::recovered([(MapId(7), 0, Epoch(3)), (MapId(8), 0, Epoch(5))], Some(9));
        let s = state.select(&MapFilter::All);
        assert!(s.contains(7, 3) && !s.contains(8, 5));
        let mut state = state;
        assert_eq!(state.begin(MapId(9)), Ok(Epoch(10)));
        assert_eq!(state.begin(MapId(7)), Err(CommitRefused::AlreadyCommitted));
    }
}
