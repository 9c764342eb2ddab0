//! Per-day metric series of the caller's containers and domains.

use async_graphql::{Context, Object, SimpleObject};
use berth_service::metrics::{parse_samples, requested_day};

use crate::error::GqlResult;
use crate::{caller, service};

/// One collector sample.
#[derive(SimpleObject)]
pub struct MetricSample {
    /// Unix seconds.
    pub unix: i64,
    pub value: i64,
}

/// One container's samples of a domain series.
#[derive(SimpleObject)]
pub struct DomainMetricSeries {
    /// The container's uid.
    pub container: i64,
    pub samples: Vec<MetricSample>,
}

fn samples(json: Option<&str>) -> async_graphql::Result<Vec<MetricSample>> {
    Ok(parse_samples(json).gql()?.into_iter().map(|(unix, value)| MetricSample { unix, value }).collect())
}

#[derive(Default)]
pub struct MetricsQuery;

#[Object]
impl MetricsQuery {
    /// A day (UTC; missing parts are today's) of one container series: `cpu`, `mem`,
    /// `mem.rss`, `mem.cache`, `io.read`, `io.write`, `net.rx`, `net.tx` or `quota`.
    async fn container_metrics(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Container uid")] container: i64,
        kind: String,
        year: Option<i64>,
        month: Option<i64>,
        day: Option<i64>,
    ) -> async_graphql::Result<Vec<MetricSample>> {
        let caller = caller(ctx)?;
        let day = requested_day(year, month, day).gql()?;
        let json = service(ctx).container_metric(&caller, container, &kind, day).await.gql()?;
        samples(json.as_deref())
    }

    /// A day (UTC) of one domain series (`net.rx`, `net.tx` or `hits`), per container.
    async fn domain_metrics(
        &self,
        ctx: &Context<'_>,
        domain: i64,
        kind: String,
        year: Option<i64>,
        month: Option<i64>,
        day: Option<i64>,
    ) -> async_graphql::Result<Vec<DomainMetricSeries>> {
        let caller = caller(ctx)?;
        let day = requested_day(year, month, day).gql()?;
        let series = service(ctx).domain_metric(&caller, domain, &kind, day).await.gql()?;
        series
            .into_iter()
            .map(|s| {
                Ok(DomainMetricSeries {
                    container: berth_model::uid_of(s.container_id),
                    samples: samples(s.json.as_deref())?,
                })
            })
            .collect()
    }
}
