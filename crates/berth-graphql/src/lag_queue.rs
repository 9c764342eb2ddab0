//! A broadcast queue whose readers may fall behind by a bounded number of messages *and*
//! bytes.
//!
//! tokio's broadcast bounds what a slow reader pins by count only. A subscription message
//! carries up to 64 KiB (an alarm's message), and one connection runs up to 100 distinct
//! subscriptions, so a connection that stopped reading could pin 100 × 1024 × 64 KiB. Here
//! every reader draws on a [`LagBudget`] (one per WebSocket, shared by its subscriptions):
//! a message that would take a reader more than `max_lag` messages behind, or its budget
//! past its bytes, cuts that reader off instead. Its unread messages are released at once;
//! it learns how many it missed on its next read. A message is freed as soon as every
//! reader it was queued for has read it or was cut off.
//!
//! Each waiting reader keeps its waker in its place, under the queue's one lock: a read
//! takes the lock once, and a push wakes exactly the readers that wait, after letting the
//! lock go (a `Notify` cost each reader another lock per read, on a list shared by all).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// The bytes one group of readers (one connection's subscriptions) may hold unread.
#[derive(Debug)]
pub(crate) struct LagBudget {
    held: AtomicUsize,
    limit: usize,
}

impl LagBudget {
    pub(crate) fn new(limit: usize) -> Arc<LagBudget> {
        Arc::new(LagBudget { held: AtomicUsize::new(0), limit })
    }

    /// Takes `bytes` if they fit. A group holding nothing always takes one message, so a
    /// message larger than the whole budget still reaches a reader that keeps up; nothing
    /// (0 bytes) always fits, even in a group already past its limit by such a message.
    fn try_hold(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held == 0 || bytes == 0 || held.saturating_add(bytes) <= self.limit)
                    .then(|| held.saturating_add(bytes))
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held unread right now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// What a reader gets next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received<T> {
    Item(T),
    /// The reader was cut off, having fallen behind by this many messages (counted up to
    /// now); it gets nothing more.
    Missed(u64),
}

pub(crate) struct LagQueue<T> {
    state: Mutex<State<T>>,
    max_lag: usize,
}

struct State<T> {
    /// Sequence number of `entries[0]`.
    head: u64,
    entries: VecDeque<Entry<T>>,
    readers: Slab<Position>,
}

struct Entry<T> {
    item: T,
    bytes: usize,
    /// Readers that still have to read it.
    unread_by: usize,
}

struct Position {
    /// Sequence number of the next message to read.
    next: u64,
    /// Bytes of the unread messages, held in `budget`.
    held: usize,
    budget: Arc<LagBudget>,
    /// Set once cut off: how many messages it missed.
    missed: Option<u64>,
    /// The reader's, while it waits for a message.
    waiting: Option<Waker>,
}

impl<T> State<T> {
    fn tail(&self) -> u64 {
        self.head + self.entries.len() as u64
    }

    /// Releases what reader `key` has not read: it is gone.
    fn release_unread(&mut self, key: usize) {
        release_unread(&mut self.readers[key], self.head, &mut self.entries);
    }

    fn free_read_entries(&mut self) {
        while self.entries.front().is_some_and(|e| e.unread_by == 0) {
            self.entries.pop_front();
            self.head += 1;
        }
    }
}

/// Releases what `position` has not read: it is cut off or gone.
fn release_unread<T>(position: &mut Position, head: u64, entries: &mut VecDeque<Entry<T>>) {
    if position.missed.is_some() {
        return;
    }
    position.budget.release(std::mem::take(&mut position.held));
    let from = (position.next - head) as usize;
    for entry in entries.range_mut(from..) {
        entry.unread_by -= 1;
    }
}

/// Cuts `position` off at the push of message `tail`: it missed its unread ones and that.
fn cut_off<T>(position: &mut Position, head: u64, entries: &mut VecDeque<Entry<T>>, tail: u64) {
    release_unread(position, head, entries);
    position.missed = Some(tail - position.next + 1);
}

impl<T: Clone> LagQueue<T> {
    /// A queue whose readers may be at most `max_lag` messages behind.
    pub(crate) fn new(max_lag: usize) -> Arc<LagQueue<T>> {
        Arc::new(LagQueue {
            state: Mutex::new(State { head: 0, entries: VecDeque::new(), readers: Slab::new() }),
            max_lag,
        })
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reader of every message pushed from now on, drawing on `budget`.
    pub(crate) fn reader(self: &Arc<Self>, budget: Arc<LagBudget>) -> Reader<T> {
        let mut state = self.state();
        let next = state.tail();
        let key = state.readers.insert(Position { next, held: 0, budget, missed: None, waiting: None });
        Reader { queue: self.clone(), key }
    }

    /// Queues `item` (of `bytes`, as written to a client) for every reader, cutting off
    /// those it would take past their bounds, and wakes the readers.
    pub(crate) fn push(&self, item: T, bytes: usize) {
        let mut state = self.state();
        let tail = state.tail();
        let State { head, entries, readers } = &mut *state;
        // Those too far behind are cut first, each one's bytes released at once, so that
        // what this push frees counts for the budgets of the readers it is queued for.
        for (_, position) in readers.iter_mut() {
            match &mut position.missed {
                Some(missed) => *missed += 1,
                None if tail - position.next >= self.max_lag as u64 => cut_off(position, *head, entries, tail),
                None => {}
            }
        }
        let mut unread_by = 0;
        for (_, position) in readers.iter_mut() {
            if position.missed.is_some() {
                continue;
            }
            if position.budget.try_hold(bytes) {
                position.held += bytes;
                unread_by += 1;
            } else {
                cut_off(position, *head, entries, tail);
            }
        }
        state.free_read_entries();
        if unread_by == 0 {
            // Every earlier entry was read or released too (a reader counted for an entry
            // is counted for every later one), so nothing is queued: skip this one.
            debug_assert!(state.entries.is_empty());
            state.head += 1;
        } else {
            state.entries.push_back(Entry { item, bytes, unread_by });
        }
        // Every waiting reader now has a message, or learns it was cut off.
        let waiting: Vec<Waker> = state.readers.iter_mut().filter_map(|(_, p)| p.waiting.take()).collect();
        drop(state);
        for waker in waiting {
            waker.wake();
        }
    }
}

/// One reader's place in a [`LagQueue`]; dropping it releases what it has not read.
pub(crate) struct Reader<T: Clone> {
    queue: Arc<LagQueue<T>>,
    key: usize,
}

impl<T: Clone> Reader<T> {
    /// The next message, waiting for one if there is none yet.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Received<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message, or pending until a push (the waker is kept under the same lock
    /// as the look, so no push in between is missed).
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Received<T>> {
        let mut state = self.queue.state();
        let head = state.head;
        let tail = state.tail();
        let position = &mut state.readers[self.key];
        if let Some(missed) = position.missed {
            return Poll::Ready(Received::Missed(missed));
        }
        if position.next == tail {
            match &mut position.waiting {
                Some(waker) => waker.clone_from(cx.waker()),
                None => position.waiting = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let index = (position.next - head) as usize;
        let entry = &mut state.entries[index];
        entry.unread_by -= 1;
        let (item, bytes) = (entry.item.clone(), entry.bytes);
        let position = &mut state.readers[self.key];
        position.next += 1;
        position.held -= bytes;
        position.budget.release(bytes);
        state.free_read_entries();
        Poll::Ready(Received::Item(item))
    }
}

impl<T: Clone> Drop for Reader<T> {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        state.release_unread(self.key);
        state.readers.remove(self.key);
        state.free_read_entries();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued<T>(queue: &LagQueue<T>) -> usize {
        queue.state.lock().unwrap().entries.len()
    }

    #[tokio::test]
    async fn readers_get_what_was_pushed_after_they_joined_in_order() {
        let queue = LagQueue::new(8);
        queue.push("before", 1);
        let mut a = queue.reader(LagBudget::new(100));
        queue.push("one", 1);
        let mut b = queue.reader(LagBudget::new(100));
        queue.push("two", 1);
        assert_eq!(a.recv().await, Received::Item("one"));
        assert_eq!(a.recv().await, Received::Item("two"));
        assert_eq!(b.recv().await, Received::Item("two"));
        assert_eq!(queued(&queue), 0, "read by everyone: freed");
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_push() {
        let queue = LagQueue::new(8);
        let mut reader = queue.reader(LagBudget::new(100));
        let waiting = tokio::spawn(async move { reader.recv().await });
        tokio::task::yield_now().await;
        queue.push(7, 1);
        assert_eq!(waiting.await.unwrap(), Received::Item(7));
    }

    #[tokio::test]
    async fn a_reader_past_its_count_is_cut_off_and_the_others_go_on() {
        let queue = LagQueue::new(3);
        let mut slow = queue.reader(LagBudget::new(1000));
        let mut fast = queue.reader(LagBudget::new(1000));
        for i in 0..5 {
            queue.push(i, 10);
            assert_eq!(fast.recv().await, Received::Item(i));
        }
        // Three were queued for it; the fourth cut it off, the fifth was missed as well.
        assert_eq!(slow.recv().await, Received::Missed(5));
        assert_eq!(queued(&queue), 0, "the cut-off reader's messages were released");
    }

    #[tokio::test]
    async fn a_budget_bounds_the_bytes_of_all_its_readers() {
        let queue_a = LagQueue::new(1024);
        let queue_b = LagQueue::new(1024);
        let stuck = LagBudget::new(250);
        let reading = LagBudget::new(250);
        let mut stuck_a = queue_a.reader(stuck.clone());
        let mut stuck_b = queue_b.reader(stuck.clone());
        let mut reader = queue_a.reader(reading.clone());
        queue_a.push("a1", 100);
        queue_b.push("b1", 100);
        assert_eq!(stuck.held(), 200);
        // 300 would pass the budget: only the reader it was for is cut off.
        queue_a.push("a2", 100);
        assert_eq!(stuck.held(), 100, "stuck_a's bytes were released");
        assert!(stuck.held() <= 250);
        assert_eq!(reader.recv().await, Received::Item("a1"));
        assert_eq!(reader.recv().await, Received::Item("a2"));
        assert_eq!(reading.held(), 0);
        assert_eq!(queued(&queue_a), 0, "nobody is left behind on queue a");
        assert_eq!(stuck_a.recv().await, Received::Missed(2));
        assert_eq!(stuck_b.recv().await, Received::Item("b1"));
        assert_eq!(stuck.held(), 0);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_reaches_a_reader_that_keeps_up() {
        let queue = LagQueue::new(8);
        let budget = LagBudget::new(10);
        let mut reader = queue.reader(budget.clone());
        queue.push("big", 50);
        assert_eq!(reader.recv().await, Received::Item("big"));
        queue.push("big", 50);
        queue.push("another", 5);
        assert_eq!(reader.recv().await, Received::Missed(2), "a second one while it holds the first does not fit");
    }

    #[tokio::test]
    async fn an_end_reaches_a_reader_whose_budget_is_past_its_limit() {
        let budget = LagBudget::new(100);
        let (big, ending) = (LagQueue::new(8), LagQueue::new(8));
        let mut big_reader = big.reader(budget.clone());
        let mut ending_reader = ending.reader(budget.clone());
        big.push("big", 150);
        ending.push("end", 0);
        assert_eq!(ending_reader.recv().await, Received::Item("end"), "nothing always fits");
        assert_eq!(big_reader.recv().await, Received::Item("big"));
    }

    #[tokio::test]
    async fn what_a_push_cuts_off_frees_room_for_that_push() {
        let budget = LagBudget::new(100);
        let queue = LagQueue::new(2);
        let _stuck = queue.reader(budget.clone());
        let mut live = queue.reader(budget.clone());
        queue.push(1, 10);
        assert_eq!(live.recv().await, Received::Item(1));
        queue.push(2, 10);
        assert_eq!(live.recv().await, Received::Item(2));
        // `stuck` is cut for its count and its 20 bytes freed: 85 fits for `live`.
        queue.push(3, 85);
        assert_eq!(live.recv().await, Received::Item(3));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_dropped_reader_releases_its_unread_messages() {
        let queue = LagQueue::new(8);
        let budget = LagBudget::new(1000);
        let reader = queue.reader(budget.clone());
        let mut other = queue.reader(LagBudget::new(1000));
        queue.push(1, 10);
        queue.push(2, 10);
        assert_eq!(other.recv().await, Received::Item(1));
        drop(reader);
        assert_eq!(budget.held(), 0);
        assert_eq!(queued(&queue), 1, "only what `other` has not read yet");
        assert_eq!(other.recv().await, Received::Item(2));
        assert_eq!(queued(&queue), 0);
    }
}
