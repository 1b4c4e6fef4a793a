//! The index of nodes by free room that keeps first-fit placement near-linear: a max tree
//! over the nodes in their order, holding per subtree the most free CPU and the most free
//! memory of a node there that may take one more pod. A subtree whose maxima cannot hold
//! a pod's requests is skipped whole, so the first node with room is found without a scan.

use super::model::Resources;

/// A leaf with no room: no pod place left, or left out of the view.
const NONE: f64 = f64::NEG_INFINITY;

#[derive(Debug, Clone)]
pub struct RoomIndex {
    /// Leaves at `size..size + len`; node `k`'s children at `2k`, `2k + 1`.
    cpu: Vec<f64>,
    memory: Vec<f64>,
    size: usize,
    len: usize,
}

impl RoomIndex {
    /// The index over `rooms` in order: a node's free room, or None if it takes no pod.
    pub fn new(rooms: impl ExactSizeIterator<Item = Option<Resources>>) -> RoomIndex {
        let len = rooms.len();
        let size = len.max(1).next_power_of_two();
        let mut index = RoomIndex {
            cpu: vec![NONE; 2 * size],
            memory: vec![NONE; 2 * size],
            size,
            len,
        };
        for (i, room) in rooms.enumerate() {
            let (c, m) = room.map_or((NONE, NONE), |r| (r.cpu, r.memory));
            index.cpu[size + i] = c;
            index.memory[size + i] = m;
        }
        for k in (1..size).rev() {
            index.pull(k);
        }
        index
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pull(&mut self, k: usize) {
        self.cpu[k] = self.cpu[2 * k].max(self.cpu[2 * k + 1]);
        self.memory[k] = self.memory[2 * k].max(self.memory[2 * k + 1]);
    }

    /// Sets node `i`'s room (after a pod was placed on it, or it was left out).
    pub fn set(&mut self, i: usize, room: Option<Resources>) {
        let (c, m) = room.map_or((NONE, NONE), |r| (r.cpu, r.memory));
        let mut k = self.size + i;
        self.cpu[k] = c;
        self.memory[k] = m;
        while k > 1 {
            k /= 2;
            self.pull(k);
        }
    }

    /// Adds a node at the end (a new worker), doubling the tree when it is full.
    pub fn push(&mut self, room: Option<Resources>) {
        if self.len == self.size {
            let rooms: Vec<Option<Resources>> = (0..self.len)
                .map(|i| self.leaf(i))
                .chain(std::iter::once(room))
                .collect();
            *self = RoomIndex::new(rooms.into_iter());
            return;
        }
        self.len += 1;
        self.set(self.len - 1, room);
    }

    fn leaf(&self, i: usize) -> Option<Resources> {
        let (c, m) = (self.cpu[self.size + i], self.memory[self.size + i]);
        (c != NONE).then(|| Resources::new(c, m))
    }

    /// Whether tree node `k`'s maxima could hold `need`: the same tolerance as
    /// `Resources::within`, so a node skipped here would fail the fit check too.
    fn may_hold(&self, k: usize, need: Resources) -> bool {
        need.within(Resources::new(self.cpu[k], self.memory[k]))
    }

    /// The first node at or after `from` whose room holds `need`.
    pub fn first_from(&self, from: usize, need: Resources) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        self.find(1, 0, self.size, from, need)
    }

    fn find(&self, k: usize, lo: usize, hi: usize, from: usize, need: Resources) -> Option<usize> {
        if hi <= from || !self.may_hold(k, need) {
            return None;
        }
        if k >= self.size {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.find(2 * k, lo, mid, from, need)
            .or_else(|| self.find(2 * k + 1, mid, hi, from, need))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The index finds what a scan of the rooms finds, after any sets and pushes.
        #[test]
        fn first_from_is_the_scan(
            rooms in proptest::collection::vec(proptest::option::of((0.0f64..4.0, 0.0f64..4.0)), 0..40),
            sets in proptest::collection::vec((0usize..40, proptest::option::of((0.0f64..4.0, 0.0f64..4.0))), 0..20),
            pushes in proptest::collection::vec(proptest::option::of((0.0f64..4.0, 0.0f64..4.0)), 0..20),
            need in (0.0f64..4.0, 0.0f64..4.0),
            from in 0usize..60,
        ) {
            let r = |o: Option<(f64, f64)>| o.map(|(c, m)| Resources::new(c, m));
            let mut plain: Vec<Option<Resources>> = rooms.iter().map(|o| r(*o)).collect();
            let mut index = RoomIndex::new(plain.clone().into_iter());
            for (i, room) in sets {
                if i < plain.len() {
                    plain[i] = r(room);
                    index.set(i, r(room));
                }
            }
            for room in pushes {
                plain.push(r(room));
                index.push(r(room));
            }
            let need = Resources::new(need.0, need.1);
            let scan = (from..plain.len()).find(|&i| plain[i].is_some_and(|room| need.within(room)));
            prop_assert_eq!(index.first_from(from, need), scan);
            prop_assert_eq!(index.len(), plain.len());
        }
    }
}
