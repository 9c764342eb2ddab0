//! Alarms: the `Alarm` type, the newest-first `alarms` connection with `totalCount`,
//! `raiseAlarm`, `deleteAlarm` and `regenerateAlarmKey`.

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields};
use async_graphql::{Context, Object, SimpleObject};
use base64::Engine as _;
use berth_service::alarms::{AlarmFilter, RaiseAlarm};
use berth_service::Error;

use crate::error::GqlResult;
use crate::{caller, service};

/// An alarm of one of the caller's containers.
pub struct Alarm(pub berth_model::Alarm);

#[Object]
impl Alarm {
    async fn id(&self) -> i64 {
        self.0.id
    }
    /// The container's uid.
    async fn container(&self) -> i64 {
        berth_model::uid_of(self.0.container_id)
    }
    /// 0 system, 1 user, 2 exception, 3 traceback, 4 log.
    async fn level(&self) -> i64 {
        self.0.level
    }
    /// The alarm text, stored as raised.
    async fn message(&self) -> &str {
        &self.0.msg
    }
    /// Unix seconds.
    async fn unix(&self) -> i64 {
        self.0.unix
    }
    /// `#rrggbb`.
    async fn color(&self) -> &str {
        &self.0.color
    }
    async fn class(&self) -> Option<&str> {
        self.0.class.as_deref()
    }
    async fn vassal(&self) -> Option<&str> {
        self.0.vassal.as_deref()
    }
    async fn line(&self) -> Option<i64> {
        self.0.line
    }
    async fn filename(&self) -> Option<&str> {
        self.0.filename.as_deref()
    }
    async fn func(&self) -> Option<&str> {
        self.0.func.as_deref()
    }
}

/// Position in the newest-first list: the (unix, id) of the last alarm seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmCursor {
    unix: i64,
    id: i64,
}

impl CursorType for AlarmCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| "malformed cursor".to_owned())?;
        let text = String::from_utf8(bytes).map_err(|_| "malformed cursor".to_owned())?;
        let rest = text.strip_prefix("alarm:").ok_or_else(|| "malformed cursor".to_owned())?;
        let (unix, id) = rest.split_once(':').ok_or_else(|| "malformed cursor".to_owned())?;
        match (unix.parse(), id.parse()) {
            (Ok(unix), Ok(id)) => Ok(AlarmCursor { unix, id }),
            _ => Err("malformed cursor".to_owned()),
        }
    }

    fn encode_cursor(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("alarm:{}:{}", self.unix, self.id))
    }
}

#[derive(SimpleObject)]
pub struct AlarmTotal {
    /// How many alarms match the filters, over all pages.
    pub total_count: i64,
}

#[derive(Default)]
pub struct AlarmQuery;

#[Object]
impl AlarmQuery {
    /// The caller's alarms, newest first (by `unix`, then id), filtered by exact matches.
    #[allow(clippy::too_many_arguments)]
    async fn alarms(
        &self,
        ctx: &Context<'_>,
        first: Option<i64>,
        after: Option<String>,
        #[graphql(desc = "Container uid")] container: Option<i64>,
        level: Option<i64>,
        class: Option<String>,
        vassal: Option<String>,
        color: Option<String>,
        line: Option<i64>,
        filename: Option<String>,
        func: Option<String>,
    ) -> async_graphql::Result<Connection<AlarmCursor, Alarm, AlarmTotal, EmptyFields>> {
        let caller = caller(ctx)?;
        let after = after
            .map(|a| AlarmCursor::decode_cursor(&a))
            .transpose()
            .map_err(|_| crate::gql_error(Error::bad_input("after", "malformed cursor")))?;
        let filter = AlarmFilter { container, level, line, class, vassal, color, filename, func };
        let slice = service(ctx).alarm_slice(&caller, &filter, first, after.map(|c| (c.unix, c.id))).await.gql()?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            slice.has_next,
            AlarmTotal { total_count: slice.total },
        );
        connection
            .edges
            .extend(slice.alarms.into_iter().map(|a| Edge::new(AlarmCursor { unix: a.unix, id: a.id }, Alarm(a))));
        Ok(connection)
    }

    async fn alarm(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<Alarm> {
        let caller = caller(ctx)?;
        Ok(Alarm(service(ctx).alarm(&caller, id).await.gql()?))
    }
}

#[derive(Default)]
pub struct AlarmMutation;

#[Object]
impl AlarmMutation {
    /// Raises an alarm on one of the caller's containers. `level` defaults to 1 (0 is the
    /// platform's: FORBIDDEN); `color` defaults to `#ffffff`; `unix` to now. The container's
    /// oldest alarms make room when it holds its maximum.
    #[allow(clippy::too_many_arguments)]
    async fn raise_alarm(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Container uid")] container: i64,
        message: String,
        level: Option<i64>,
        color: Option<String>,
        class: Option<String>,
        vassal: Option<String>,
        line: Option<i64>,
        filename: Option<String>,
        func: Option<String>,
        unix: Option<i64>,
    ) -> async_graphql::Result<Alarm> {
        let caller = caller(ctx)?;
        let raise = RaiseAlarm { container, msg: message, level, color, class, vassal, line, filename, func, unix };
        Ok(Alarm(service(ctx).raise_alarm(&caller, raise).await.gql()?))
    }

    /// Deletes one of the caller's alarms; returns its id.
    async fn delete_alarm(&self, ctx: &Context<'_>, id: i64) -> async_graphql::Result<i64> {
        let caller = caller(ctx)?;
        Ok(service(ctx).delete_alarm(&caller, id).await.gql()?.id)
    }

    /// Replaces the container's alarm key (for the REST raise route's `key`) and returns it;
    /// the previous key stops working at once.
    async fn regenerate_alarm_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Container uid")] container: i64,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx)?;
        service(ctx).regenerate_alarm_key(&caller, container).await.gql()
    }

    /// Makes a new signing secret for the container's alarm webhook and returns it; this is
    /// the only time it is shown. Deliveries are signed with it from now on (header
    /// `X-Berth-Signature: sha256=<hex HMAC-SHA256 of "<X-Berth-Timestamp>.<body>">`).
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Container uid")] uid: i64,
    ) -> async_graphql::Result<String> {
        let caller = caller(ctx)?;
        service(ctx).rotate_webhook_secret(&caller, uid).await.gql()
    }
}
