//! The targets a task marks while it is routed: a bitset as wide as the
//! matcher's targets, of which only the words touched are visited and
//! cleared, so that routing costs what matches, not the number of queues.
//! One per thread, reused.

use std::cell::RefCell;

#[derive(Debug, Default)]
pub(crate) struct Hits {
    /// All zero between uses.
    words: Vec<u64>,
    /// Indexes of the words that are not zero.
    touched: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Hits> = RefCell::new(Hits::default());
}

impl Hits {
    /// Runs `f` with this thread's hits, wide enough for `targets`. A panic
    /// inside drops them rather than leave marks for the next task.
    pub fn with<R>(targets: usize, f: impl FnOnce(&mut Hits) -> R) -> R {
        let mut hits = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        hits.reset(targets);
        let out = f(&mut hits);
        hits.clear();
        SCRATCH.with(|s| *s.borrow_mut() = hits);
        out
    }

    pub fn reset(&mut self, targets: usize) {
        let words = targets.div_ceil(64);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    #[inline]
    pub fn set(&mut self, target: u32) {
        let index = (target >> 6) as usize;
        let word = &mut self.words[index];
        if *word == 0 {
            self.touched.push(index as u32);
        }
        *word |= 1 << (target & 63);
    }

    pub fn set_all(&mut self, targets: &[u32]) {
        for &t in targets {
            self.set(t);
        }
    }

    #[inline]
    pub fn is_set(&self, target: u32) -> bool {
        self.words[(target >> 6) as usize] & (1 << (target & 63)) != 0
    }

    /// Every marked target at or above `from`, in no order.
    pub fn each_from(&self, from: u32, mut f: impl FnMut(u32)) {
        for &index in &self.touched {
            let mut word = self.words[index as usize];
            while word != 0 {
                let bit = index * 64 + word.trailing_zeros();
                if bit >= from {
                    f(bit);
                }
                word &= word - 1;
            }
        }
    }

    /// Appends the marked targets below `below`, ascending, and clears all.
    pub fn drain(&mut self, below: usize, out: &mut Vec<usize>) {
        self.touched.sort_unstable();
        for &index in &self.touched {
            let word = &mut self.words[index as usize];
            let mut bits = *word;
            *word = 0;
            while bits != 0 {
                let bit = index as usize * 64 + bits.trailing_zeros() as usize;
                if bit < below {
                    out.push(bit);
                }
                bits &= bits - 1;
            }
        }
        self.touched.clear();
    }

    fn clear(&mut self) {
        for &index in &self.touched {
            self.words[index as usize] = 0;
        }
        self.touched.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_come_out_ascending_once_and_are_gone_after() {
        let mut h = Hits::default();
        h.reset(300);
        for t in [250, 3, 64, 3, 130, 299] {
            h.set(t);
        }
        assert!(h.is_set(64) && !h.is_set(65));
        let mut above = Vec::new();
        h.each_from(200, |t| above.push(t));
        above.sort_unstable();
        assert_eq!(above, [250, 299]);
        let mut out = Vec::new();
        h.drain(260, &mut out);
        assert_eq!(out, [3, 64, 130, 250]);
        assert!(h.words.iter().all(|w| *w == 0) && h.touched.is_empty());
    }

    #[test]
    fn a_panic_while_routing_leaves_no_marks_behind() {
        let _ = std::panic::catch_unwind(|| {
            Hits::with(128, |h| {
                h.set(5);
                panic!("mid-route");
            })
        });
        let clean = Hits::with(128, |h| !h.is_set(5));
        assert!(clean);
    }
}
