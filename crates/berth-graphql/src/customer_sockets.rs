//! How many WebSockets each customer holds open on this gateway, at most a limit at once.
//!
//! Every live socket costs the gateway a file descriptor, memory and, on each alarm, a
//! write; the descriptors and the delivery time are shared by all customers. Without a
//! bound, one customer (a runaway dashboard, a leaking client) could take them from the
//! others. The per-socket subscription limit bounds what each socket may ask for; this
//! bounds the sockets. Only authenticated sockets count: one that never completes
//! `connection_init` is closed by its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// WebSockets one customer may hold open on one gateway by default.
pub const DEFAULT_MAX_WEBSOCKETS_PER_CUSTOMER: usize = 1000;

/// The open sockets of every customer of one router; cheap to clone.
#[derive(Clone)]
pub(crate) struct CustomerSockets(Arc<Counts>);

struct Counts {
    limit: usize,
    open: Mutex<HashMap<i64, usize>>,
}

/// One customer's place among its open sockets, given back when dropped (with its socket).
pub(crate) struct SocketPlace {
    counts: Arc<Counts>,
    customer_id: i64,
}

impl CustomerSockets {
    pub(crate) fn new(limit: usize) -> CustomerSockets {
        CustomerSockets(Arc::new(Counts { limit, open: Mutex::default() }))
    }

    pub(crate) fn limit(&self) -> usize {
        self.0.limit
    }

    /// A place for one more socket of `customer_id`, or `None` when it holds the limit.
    pub(crate) fn take(&self, customer_id: i64) -> Option<SocketPlace> {
        let mut open = self.0.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.get(&customer_id).copied().unwrap_or(0);
        if count >= self.0.limit {
            return None;
        }
        open.insert(customer_id, count + 1);
        Some(SocketPlace { counts: self.0.clone(), customer_id })
    }

    #[cfg(test)]
    fn open_of(&self, customer_id: i64) -> Option<usize> {
        self.0.open.lock().unwrap().get(&customer_id).copied()
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.customer_id) {
            *count -= 1;
            // A customer with no socket left holds no entry: the map grows with the
            // customers connected now, not with every customer ever connected.
            if *count == 0 {
                open.remove(&self.customer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_holds_at_most_the_limit_and_others_are_untouched() {
        let sockets = CustomerSockets::new(2);
        let first = sockets.take(1).expect("first socket");
        let second = sockets.take(1).expect("second socket");
        assert!(sockets.take(1).is_none(), "a third socket is over the limit");
        let other = sockets.take(2).expect("another customer is not limited by the first");
        drop(first);
        let again = sockets.take(1).expect("a closed socket gives its place back");
        assert!(sockets.take(1).is_none());
        drop((second, again, other));
        assert_eq!(sockets.open_of(1), None, "no entry is kept for a customer without sockets");
        assert_eq!(sockets.open_of(2), None);
    }

    #[test]
    fn a_limit_of_zero_refuses_without_keeping_an_entry() {
        let sockets = CustomerSockets::new(0);
        assert!(sockets.take(7).is_none());
        assert_eq!(sockets.open_of(7), None);
    }
}
