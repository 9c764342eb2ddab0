//! The REST lists are not paginated; the service pages everything. This walks the pages.

/// Collects every item, fetching pages after the last item's id until none is left.
pub async fn all<T, F, Fut>(mut fetch: F, id: fn(&T) -> i64) -> berth_service::Result<Vec<T>>
where
    F: FnMut(Option<i64>) -> Fut,
    Fut: std::future::Future<Output = berth_service::Result<(Vec<T>, bool)>>,
{
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let (items, has_next) = fetch(after).await?;
        after = items.last().map(id);
        all.extend(items);
        if !has_next {
            return Ok(all);
        }
    }
}

/// Page size used while walking.
pub const WALK: Option<i64> = Some(100);
