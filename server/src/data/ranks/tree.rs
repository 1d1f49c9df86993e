//! An order-statistic treap: a ranking held in memory, where inserting, removing, finding a
//! member's rank and reading the entries at a given rank all cost O(log n) (expected).
//!
//! Entries are `(score, key)`, ordered by score descending, then key ascending. The nodes live
//! in one arena (`Vec`) with a free list, so a ranking of a million members is a few flat
//! allocations rather than a million boxes.

use std::cmp::Ordering;
use std::collections::HashMap;

use firefly_abi::data::Key;

const NIL: u32 = u32::MAX;

struct Node {
    score: i64,
    key: Key,
    priority: u32,
    size: u32,
    left: u32,
    right: u32,
}

/// One ranking: each member (a primary key) at most once.
pub(crate) struct RankTree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    /// Each member's score, to find its node.
    scores: HashMap<Key, i64>,
    seed: u64,
}

impl Default for RankTree {
    fn default() -> Self {
        RankTree {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            scores: HashMap::new(),
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// The order of the ranking: higher scores first, then keys ascending.
fn order(a: (i64, &Key), b: (i64, &Key)) -> Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1))
}

impl RankTree {
    /// How many members.
    pub fn len(&self) -> u64 {
        self.scores.len() as u64
    }

    /// A member's score.
    pub fn score(&self, key: &Key) -> Option<i64> {
        self.scores.get(key).copied()
    }

    /// Puts `key` at `score` (moving it if it was ranked already).
    pub fn set(&mut self, key: Key, score: i64) {
        if let Some(old) = self.scores.get(&key).copied() {
            if old == score {
                return;
            }
            self.remove(&key);
        }
        let n = self.alloc(key.clone(), score);
        let (l, r) = self.split(self.root, (score, &key), false);
        let lm = self.merge(l, n);
        self.root = self.merge(lm, r);
        self.scores.insert(key, score);
    }

    /// Takes `key` out of the ranking (nothing if it is not in it).
    pub fn remove(&mut self, key: &Key) {
        let Some(score) = self.scores.remove(key) else {
            return;
        };
        // left: before the entry; mid: the entry; right: after it.
        let (left, rest) = self.split(self.root, (score, key), false);
        let (mid, right) = self.split(rest, (score, key), true);
        if mid != NIL {
            self.free.push(mid);
            // Leave nothing behind that the arena would keep alive.
            self.nodes[mid as usize].key = Key::Int(0);
        }
        self.root = self.merge(left, right);
    }

    /// The 1-based rank of `key`, if ranked.
    pub fn rank(&self, key: &Key) -> Option<u64> {
        let score = self.score(key)?;
        let mut before = 0u64;
        let mut t = self.root;
        while t != NIL {
            let n = &self.nodes[t as usize];
            match order((score, key), (n.score, &n.key)) {
                Ordering::Less => t = n.left,
                Ordering::Equal => return Some(before + u64::from(self.size(n.left)) + 1),
                Ordering::Greater => {
                    before += u64::from(self.size(n.left)) + 1;
                    t = n.right;
                }
            }
        }
        None
    }

    /// Up to `count` entries from 0-based position `start`, best first: `(rank, key, score)`.
    pub fn range(&self, start: u64, count: usize) -> Vec<(u64, Key, i64)> {
        let mut out = Vec::with_capacity(count.min(self.scores.len()));
        self.collect(self.root, start, count, start, &mut out);
        out
    }

    /// In-order walk of subtree `t` that skips its first `skip` entries; `first` is the
    /// 0-based position the first entry collected has.
    fn collect(&self, t: u32, skip: u64, count: usize, first: u64, out: &mut Vec<(u64, Key, i64)>) {
        if t == NIL || out.len() >= count {
            return;
        }
        let n = &self.nodes[t as usize];
        let left = u64::from(self.size(n.left));
        if skip < left {
            self.collect(n.left, skip, count, first, out);
        }
        if out.len() >= count {
            return;
        }
        if skip <= left {
            out.push((first + out.len() as u64 + 1, n.key.clone(), n.score));
        }
        let right_skip = skip.saturating_sub(left + 1);
        self.collect(n.right, right_skip, count, first, out);
    }

    fn size(&self, t: u32) -> u32 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size
        }
    }

    fn update(&mut self, t: u32) {
        let (l, r) = {
            let n = &self.nodes[t as usize];
            (n.left, n.right)
        };
        self.nodes[t as usize].size = 1 + self.size(l) + self.size(r);
    }

    fn alloc(&mut self, key: Key, score: i64) -> u32 {
        // xorshift64*: priorities only need to look random to keep the tree balanced.
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        let priority = (self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32;
        let node = Node {
            score,
            key,
            priority,
            size: 1,
            left: NIL,
            right: NIL,
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).unwrap_or(NIL)
            }
        }
    }

    /// Splits `t` into the entries before `at` and the rest; with `inclusive`, `at` itself
    /// goes left.
    fn split(&mut self, t: u32, at: (i64, &Key), inclusive: bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let goes_left = {
            let n = &self.nodes[t as usize];
            match order((n.score, &n.key), at) {
                Ordering::Less => true,
                Ordering::Equal => inclusive,
                Ordering::Greater => false,
            }
        };
        if goes_left {
            let right = self.nodes[t as usize].right;
            let (l, r) = self.split(right, at, inclusive);
            self.nodes[t as usize].right = l;
            self.update(t);
            (t, r)
        } else {
            let left = self.nodes[t as usize].left;
            let (l, r) = self.split(left, at, inclusive);
            self.nodes[t as usize].left = r;
            self.update(t);
            (l, t)
        }
    }

    /// Joins two treaps where every entry of `a` comes before every entry of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let right = self.nodes[a as usize].right;
            let m = self.merge(right, b);
            self.nodes[a as usize].right = m;
            self.update(a);
            a
        } else {
            let left = self.nodes[b as usize].left;
            let m = self.merge(a, left);
            self.nodes[b as usize].left = m;
            self.update(b);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on a sorted `Vec`: the ranking a `RankTree` must agree with.
    fn naive(entries: &HashMap<Key, i64>) -> Vec<(i64, Key)> {
        let mut v: Vec<(i64, Key)> = entries.iter().map(|(k, s)| (*s, k.clone())).collect();
        v.sort_by(|a, b| order((a.0, &a.1), (b.0, &b.1)));
        v
    }

    #[test]
    fn agrees_with_a_sorted_list_under_random_operations() {
        let mut tree = RankTree::default();
        let mut truth: HashMap<Key, i64> = HashMap::new();
        let mut x: u64 = 42;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u32 {
            let key = if next() % 2 == 0 {
                Key::Int((next() % 500) as i64)
            } else {
                Key::Text(format!("p{}", next() % 500))
            };
            match next() % 4 {
                0 => {
                    tree.remove(&key);
                    truth.remove(&key);
                }
                _ => {
                    // Few distinct scores, so ties are common.
                    let score = (next() % 40) as i64 - 20;
                    tree.set(key.clone(), score);
                    truth.insert(key, score);
                }
            }
            if step % 1000 == 999 {
                let sorted = naive(&truth);
                assert_eq!(tree.len(), sorted.len() as u64);
                for (i, (score, key)) in sorted.iter().enumerate() {
                    assert_eq!(tree.rank(key), Some(i as u64 + 1), "rank of {key}");
                    assert_eq!(tree.score(key), Some(*score));
                }
                let all = tree.range(0, usize::MAX);
                let expected: Vec<(u64, Key, i64)> = sorted
                    .iter()
                    .enumerate()
                    .map(|(i, (s, k))| (i as u64 + 1, k.clone(), *s))
                    .collect();
                assert_eq!(all, expected);
                let start = next() % (sorted.len() as u64 + 3);
                let page = tree.range(start, 7);
                let want: Vec<_> = expected
                    .iter()
                    .skip(start as usize)
                    .take(7)
                    .cloned()
                    .collect();
                assert_eq!(page, want, "page at {start}");
            }
        }
    }

    #[test]
    fn stays_shallow_with_a_million_members() {
        let mut tree = RankTree::default();
        for i in 0..1_000_000i64 {
            // Inserted in rank order: the worst case for an unbalanced tree.
            tree.set(Key::Int(i), 1_000_000 - i);
        }
        assert_eq!(tree.rank(&Key::Int(0)), Some(1));
        assert_eq!(tree.rank(&Key::Int(999_999)), Some(1_000_000));
        assert_eq!(
            tree.range(499_999, 1),
            vec![(500_000, Key::Int(499_999), 500_001)]
        );
        tree.set(Key::Int(999_999), 10_000_000);
        assert_eq!(tree.rank(&Key::Int(999_999)), Some(1));
        assert_eq!(tree.rank(&Key::Int(0)), Some(2));
    }
}
