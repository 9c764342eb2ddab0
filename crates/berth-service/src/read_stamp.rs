//! What a customer's reads depend on besides their own arguments, as one comparable value:
//! an answer computed after a [`ReadStamp`] was taken is still right while a new stamp
//! reads the same.

use berth_model::{DataVersion, Day};
use berth_store::{versions, CommitMark};

use crate::metrics::today_utc;
use crate::{Caller, Result, Service};

#[derive(Debug, Clone, Copy)]
pub struct ReadStamp {
    /// Moves with every committed change of a row the customer can read (any process).
    pub data: DataVersion,
    /// The UTC day: metrics default to today's series, and a container's domains are the
    /// ones it served today.
    pub day: Day,
    /// Where the database's commits stood just before `data` was read, when the store can
    /// tell without a read (SQLite): while they stand there still, `data` cannot have moved.
    commits: Option<CommitMark>,
}

impl ReadStamp {
    /// Whether both stamps say the same of the customer's reads (however they were taken).
    pub fn reads_same_as(&self, other: &ReadStamp) -> bool {
        self.data == other.data && self.day == other.day
    }
}

/// What [`Service::recheck_stamp`] found.
#[derive(Debug, Clone, Copy)]
pub enum Recheck {
    /// Nothing was committed anywhere since the stamp was read, and the day is the same.
    Unchanged,
    /// Something was committed, but the customer's reads are where the stamp says; this is
    /// the stamp read now, worth keeping in place of the old one.
    Same(ReadStamp),
    /// The customer's reads moved: the stamp now.
    Moved(ReadStamp),
}

impl Service {
    /// The caller's stamp now: one point read.
    pub async fn read_stamp(&self, caller: &Caller) -> Result<ReadStamp> {
        // Looked at before the read: a commit landing between the two then shows as a mark
        // that moved, never as data that did not.
        let commits = self.store.commit_mark();
        let day = today_utc();
        let mut conn = self.store.reads().await?;
        let data = versions::data_version(&mut conn, caller.customer_id).await?;
        Ok(ReadStamp { data, day, commits })
    }

    /// Whether the caller's reads are still where `stamp` says. Free when the store can tell
    /// that nothing at all was committed since `stamp` was read; one point read otherwise.
    pub async fn recheck_stamp(&self, caller: &Caller, stamp: &ReadStamp) -> Result<Recheck> {
        if stamp.commits.is_some() && self.store.commit_mark() == stamp.commits && today_utc() == stamp.day {
            return Ok(Recheck::Unchanged);
        }
        let now = self.read_stamp(caller).await?;
        Ok(if now.reads_same_as(stamp) { Recheck::Same(now) } else { Recheck::Moved(now) })
    }
}
