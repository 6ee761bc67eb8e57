//! The semantic cache's index: the stored questions' vectors, grouped by context (`key::context`:
//! a candidate must share everything but the last user turn), each group an HNSW graph
//! (`hnsw_rs`, cosine distance) searched for the nearest few.
//!
//! Members point at exact-cache entries by key; the entry itself (the answer) stays in the store.
//! A member whose entry is gone (expired, evicted, purged) is marked dead when a lookup finds it
//! so and is skipped from then on. The index holds at most `max_entries` members: when full, it
//! starts over empty (logged), which keeps memory bounded without a graph that supports removal.
//!
//! Invariants: only finite unit vectors of the model's length go in (anything else is refused,
//! so the distance function never sees NaN); lookups never block inserts for long (the graph's
//! own fine-grained locks; the group table is a `DashMap`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use hnsw_rs::prelude::{Distance, Hnsw};

use crate::cache::key::Key;

/// Neighbours asked of a group per lookup.
const NEAREST: usize = 4;
/// The graph's parameters: links per node, layers, construction and search breadth.
const LINKS: usize = 16;
const LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 100;
const EF_SEARCH: usize = 48;

/// Cosine distance of unit vectors (what the index holds): `1 - a·b`, clamped to [0, 2]. The
/// crate's `DistCosine` renormalises both vectors in f64 at every step and `DistDot` asserts
/// `a·b <= 1`, which rounding can break (a panic); this one is a plain dot product in 8 lanes
/// the compiler vectorises.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
        let dot = acc.iter().sum::<f32>() + tail;
        (1.0 - dot).clamp(0.0, 2.0)
    }
}

struct Member {
    exact: Key,
    text: Arc<str>,
    dead: AtomicBool,
}

struct Group {
    graph: Hnsw<'static, f32, UnitDot>,
    members: RwLock<Vec<Member>>,
}

/// A stored question near the one asked.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The exact-cache key of its answer.
    pub exact: Key,
    /// Its last user turn (for the look-alike guard).
    pub text: Arc<str>,
    /// Cosine similarity to the question asked.
    pub score: f32,
    group: Key,
    id: usize,
}

pub struct Index {
    /// The vectors' length (0 until the first vector, for a model whose length is learnt).
    dims: AtomicUsize,
    max_entries: usize,
    groups: DashMap<Key, Arc<Group>>,
    count: AtomicUsize,
}

impl Index {
    pub fn new(dims: usize, max_entries: usize) -> Index {
        Index {
            dims: AtomicUsize::new(dims),
            max_entries,
            groups: DashMap::new(),
            count: AtomicUsize::new(0),
        }
    }

    fn usable(&self, v: &[f32]) -> bool {
        let dims = match self.dims.load(Ordering::Acquire) {
            0 => match self
                .dims
                .compare_exchange(0, v.len(), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => v.len(),
                Err(known) => known,
            },
            known => known,
        };
        !v.is_empty() && v.len() == dims && v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)
    }

    /// Adds a question (its context, its answer's key, its text and vector).
    pub fn insert(&self, context: Key, exact: Key, text: &str, vector: &[f32]) {
        if !self.usable(vector) {
            return;
        }
        if self.count.fetch_add(1, Ordering::AcqRel) >= self.max_entries {
            tracing::info!(
                max_entries = self.max_entries,
                "semantic cache index full: starting over"
            );
            self.groups.clear();
            self.count.store(1, Ordering::Release);
        }
        let group = Arc::clone(&*self.groups.entry(context).or_insert_with(|| {
            Arc::new(Group {
                graph: Hnsw::new(LINKS, 1024, LAYERS, EF_CONSTRUCTION, UnitDot),
                members: RwLock::new(Vec::new()),
            })
        }));
        let id = {
            let mut members = group.members.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            members.push(Member {
                exact,
                text: text.into(),
                dead: AtomicBool::new(false),
            });
            members.len() - 1
        };
        group.graph.insert((vector, id));
    }

    /// The stored questions of `context` nearest to `vector`, most similar first.
    pub fn nearest(&self, context: &Key, vector: &[f32]) -> Vec<Candidate> {
        if !self.usable(vector) {
            return Vec::new();
        }
        let Some(group) = self.groups.get(context).map(|g| Arc::clone(&g)) else {
            return Vec::new();
        };
        let members = group.members.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let alive = |id: &usize| members.get(*id).is_some_and(|m| !m.dead.load(Ordering::Acquire));
        let found = group.graph.search_filter(vector, NEAREST, EF_SEARCH, Some(&alive));
        let mut out: Vec<Candidate> = found
            .into_iter()
            .filter_map(|n| {
                let m = members.get(n.d_id)?;
                Some(Candidate {
                    exact: m.exact,
                    text: Arc::clone(&m.text),
                    score: 1.0 - n.distance,
                    group: *context,
                    id: n.d_id,
                })
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }

    /// The candidate's answer is gone: skip it from now on.
    pub fn forget(&self, c: &Candidate) {
        if let Some(group) = self.groups.get(&c.group) {
            let members = group.members.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(m) = members.get(c.id) {
                m.dead.store(true, Ordering::Release);
            }
        }
    }

    /// Members held (dead ones included).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.iter_mut().for_each(|a| *a /= n);
        v
    }

    #[test]
    fn the_nearest_of_the_same_context_are_found_and_dead_ones_skipped() {
        let idx = Index::new(8, 1000);
        let (ctx, other) = (Key([1; 32]), Key([2; 32]));
        for i in 0..50u8 {
            idx.insert(ctx, Key([i; 32]), &format!("q{i}"), &unit(u64::from(i), 8));
        }
        idx.insert(other, Key([200; 32]), "elsewhere", &unit(7, 8));
        let found = idx.nearest(&ctx, &unit(7, 8));
        assert_eq!(found[0].exact, Key([7; 32]));
        assert!((found[0].score - 1.0).abs() < 1e-4, "{}", found[0].score);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
        // Another context's identical vector is not a candidate.
        assert!(found.iter().all(|c| c.exact != Key([200; 32])));
        idx.forget(&found[0]);
        assert!(idx.nearest(&ctx, &unit(7, 8)).iter().all(|c| c.exact != Key([7; 32])));
        assert!(idx.nearest(&Key([3; 32]), &unit(7, 8)).is_empty());
        // Vectors of the wrong length or not finite are refused.
        idx.insert(ctx, Key([99; 32]), "bad", &[f32::NAN; 8]);
        idx.insert(ctx, Key([98; 32]), "short", &[1.0; 3]);
        assert!(idx.nearest(&ctx, &[f32::NAN; 8]).is_empty());
        assert_eq!(idx.len(), 51);
    }

    #[test]
    fn a_full_index_starts_over() {
        let idx = Index::new(4, 10);
        for i in 0..25u8 {
            idx.insert(Key([0; 32]), Key([i; 32]), "q", &unit(u64::from(i), 4));
        }
        assert!(idx.len() <= 10);
        assert!(!idx.nearest(&Key([0; 32]), &unit(24, 4)).is_empty());
    }
}
