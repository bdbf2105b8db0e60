//! The site's pages and actions. Pages read through the broker; actions
//! change state through it (which keeps the audit log) and answer with a
//! redirect (303) to the page to look at next, carrying a short message.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::bulk::BulkBar;
use super::csrf;
use super::search::{Search, SearchQuery};
use super::view::{self, Pager, TaskRow, PAGE_SIZE};
use crate::api::error::ApiError;
use crate::api::params::Body;
use crate::api::{caller_role, AppState};
use crate::broker::admin::Sample;
use crate::broker::BrokerError;
use crate::model::{CancelTarget, Page, RetryTarget};
use crate::model::{
    Counters, LockKind, Millis, QueueCounts, QueueName, QueueSettings, Task, TaskId, TaskState,
    WorkerId, WorkerState,
};

pub(super) type Data = web::Data<AppState>;

// ----- plumbing -------------------------------------------------------------

/// An error shown as a page: the same status and message the API gives.
#[derive(Debug)]
pub struct PageError(pub(super) ApiError);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        let page = ErrorPage {
            chrome: Chrome::bare("Something went wrong"),
            status: self.0.status.as_u16(),
            reason: self.0.status.canonical_reason().unwrap_or("Error"),
            message: &self.0.message,
        };
        let body = page.render().unwrap_or_else(|_| self.0.message.clone());
        HttpResponse::build(self.0.status)
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}

pub(super) fn bad(field: &str, why: impl std::fmt::Display) -> PageError {
    PageError(ApiError::invalid(field, why))
}

pub(super) type Res = Result<HttpResponse, PageError>;

/// What every page shows around its content.
#[derive(Debug, Clone)]
pub(super) struct Chrome {
    pub(super) title: String,
    /// The navigation entry to mark as current.
    pub(super) active: &'static str,
    pub(super) csrf: String,
    /// The outcome of the action that led here.
    pub(super) flash: Option<String>,
    pub(super) role: String,
    /// Whether keys are configured: said plainly in the top bar.
    pub(super) auth_on: bool,
    /// A viewer's key: the page shows no actions (which would be refused).
    pub(super) read_only: bool,
}

/// One entry of the site's navigation.
#[derive(Debug, Clone, Copy)]
pub(super) struct NavItem(
    pub(super) &'static str,
    pub(super) &'static str,
    pub(super) &'static str,
);

const NAV: [NavItem; 9] = [
    NavItem("overview", "/admin", "Overview"),
    NavItem("queues", "/admin/queues", "Queues"),
    NavItem("workers", "/admin/workers", "Workers"),
    NavItem("failed", "/admin/failed", "Failed"),
    NavItem("scheduled", "/admin/scheduled", "Scheduled"),
    NavItem("schedules", "/admin/schedules", "Schedules"),
    NavItem("interests", "/admin/interests", "Interests"),
    NavItem("locks", "/admin/locks", "Locks"),
    NavItem("audit", "/admin/audit", "Audit log"),
];

impl Chrome {
    pub(super) fn nav(&self) -> &'static [NavItem] {
        &NAV
    }

    pub(super) fn new(req: &HttpRequest, title: impl Into<String>, active: &'static str) -> Self {
        let flash = web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("done").cloned())
            .filter(|m| !m.is_empty());
        Self {
            title: title.into(),
            active,
            csrf: req
                .extensions()
                .get::<csrf::Token>()
                .map(|t| t.0.clone())
                .unwrap_or_default(),
            flash,
            role: caller_role(req),
            auth_on: req.app_data::<Data>().is_some_and(|s| s.keys.enabled()),
            read_only: crate::api::caller(req)
                .is_some_and(|c| !c.roles.contains(&crate::auth::Role::Admin)),
        }
    }

    fn bare(title: &str) -> Self {
        Self {
            title: title.into(),
            active: "",
            csrf: String::new(),
            flash: None,
            role: String::new(),
            auth_on: false,
            read_only: false,
        }
    }
}

pub(super) fn render(page: impl Template) -> Res {
    let body = page
        .render()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "render", e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}

/// After an action: go to `to`, saying what was done.
pub(super) fn see_other(to: &str, done: &str) -> HttpResponse {
    let sep = if to.contains('?') { '&' } else { '?' };
    let done: String = url_encode(done);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("{to}{sep}done={done}")))
        .finish()
}

pub(super) fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// A submitted form, once its CSRF token is checked.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn read(req: &HttpRequest, body: &[u8]) -> Result<Self, PageError> {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| bad("form", format!("not a form submission: {e}")))?;
        let form = Self(fields);
        if !csrf::valid(req, form.get(csrf::FIELD)) {
            return Err(PageError(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "`csrf`: this form expired or came from another site; reload the page and submit it again",
            )));
        }
        Ok(form)
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated field, in order.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, PageError> {
        self.get(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| PageError(ApiError::missing(name)))
    }

    /// Where to go after the action: a page of the site, or `default`.
    pub(super) fn back<'a>(&'a self, default: &'a str) -> &'a str {
        self.get("back")
            .filter(|b| b.starts_with("/admin") && !b.contains("//") && !b.contains('\\'))
            .unwrap_or(default)
    }
}

pub(super) fn task_id(raw: &str) -> Result<TaskId, PageError> {
    raw.parse()
        .map_err(|e| bad("taskId", format!("`{raw}` is not a task id: {e}")))
}

fn queue_name(raw: &str) -> Result<QueueName, PageError> {
    QueueName::parse(raw).map_err(|e| bad("queue", e))
}

pub(super) fn json_object(field: &str, raw: &str) -> Result<Map<String, Value>, PageError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad(
            field,
            "must be a JSON object, like {\"kind\": \"email\"}",
        )),
        Err(e) => Err(bad(field, format!("is not valid JSON: {e}"))),
    }
}

/// The query of a list page. Unknown parameters are ignored: people edit
/// these addresses by hand.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    pub(super) edit: Option<String>,
    /// `json`: edit interests as JSON, not as rows.
    #[serde(default, rename = "as")]
    pub(super) view_as: Option<String>,
    /// Part of a queue's name, to list only those.
    #[serde(default)]
    pub(super) find: Option<String>,
    /// A searched list's cursor: the last copy of the page before.
    #[serde(default)]
    after: Option<String>,
    /// A finished tab lists the queue's archive instead of its history in
    /// memory (`1`), from the copy after `before`.
    #[serde(default)]
    archived: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(flatten)]
    search: SearchQuery,
}

impl ListQuery {
    /// The filter and page a list shows. A searched list's next page comes
    /// with the cursor of the page before (`after`), so that a deep page
    /// costs what the first does; a page asked for by number alone (a link
    /// typed or kept) is counted up to instead.
    fn listing(
        &self,
        search: &Search,
        page: usize,
    ) -> Result<(crate::model::TaskFilter, Page), PageError> {
        let mut filter = search.filter.clone();
        let cursor = match self.after.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(
                raw.parse::<TaskId>()
                    .map_err(|e| bad("after", format!("`{raw}` is not a task id: {e}")))?,
            ),
        };
        let offset = match cursor {
            Some(id) if search.is_active() => {
                filter.after = Some(id);
                0
            }
            _ => Pager::offset(page),
        };
        Ok((
            filter,
            Page {
                offset,
                limit: PAGE_SIZE,
            },
        ))
    }

    /// The 1-based page asked for.
    fn search(&self) -> Result<Search, PageError> {
        Search::read(&self.search).map_err(PageError)
    }

    pub(super) fn page(&self) -> Result<usize, PageError> {
        match self.page.as_deref().map(str::trim) {
            None | Some("") => Ok(1),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(bad("page", format!("is a page number from 1, not `{raw}`"))),
            },
        }
    }
}

// ----- overview -------------------------------------------------------------

/// Rates per second between samples, as SVG polyline points over time, with
/// what the axes say.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Chart {
    published: String,
    completed: String,
    failed: String,
    /// The top of the y axis, and its middle (tasks per second).
    peak: u64,
    half: String,
    /// The x axis: its start, middle and end (UTC times).
    from: String,
    mid: String,
    to: String,
    /// `hour` or `day`.
    span: &'static str,
}

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

/// How much the throughput chart shows: the last hour (every sample) or
/// the last day (one a minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Hour,
    Day,
}

impl Span {
    fn of(raw: Option<&str>) -> Result<Self, PageError> {
        match raw {
            None | Some("") | Some("hour") => Ok(Span::Hour),
            Some("day") => Ok(Span::Day),
            Some(other) => Err(bad("chart", format!("is hour or day, not `{other}`"))),
        }
    }

    fn millis(self) -> u64 {
        match self {
            Span::Hour => 3_600_000,
            Span::Day => 86_400_000,
        }
    }
}

fn chart(samples: &[Sample], span: Span, now: Millis) -> Chart {
    let samples: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at <= now && (span == Span::Hour || s.at.0 % 60_000 == 0))
        .collect();
    let start = Millis(now.0.saturating_sub(span.millis()));
    let clock = |at: Millis| view::time(at).get(11..16).unwrap_or("").to_owned();
    let mut out = Chart {
        from: clock(start),
        mid: clock(Millis(start.0 + span.millis() / 2)),
        to: format!("{} UTC", clock(now)),
        span: match span {
            Span::Hour => "hour",
            Span::Day => "day",
        },
        ..Chart::default()
    };
    if samples.len() < 2 {
        out.peak = 1;
        out.half = "0.5".into();
        return out;
    }
    let rate = |pick: fn(&Counters) -> u64| -> Vec<(Millis, f64)> {
        samples
            .windows(2)
            .map(|w| {
                let secs = (w[1].at.since(w[0].at) as f64 / 1000.0).max(0.001);
                let n = pick(&w[1].counters).saturating_sub(pick(&w[0].counters));
                (w[1].at, n as f64 / secs)
            })
            .collect()
    };
    let series = [
        rate(|c| c.published),
        rate(|c| c.completed),
        rate(|c| c.failed),
    ];
    let peak = series
        .iter()
        .flatten()
        .fold(0.0f64, |a, &(_, b)| a.max(b))
        .max(1.0)
        .ceil();
    // Placed by time, so that a gap (a node down, a sample not stored)
    // shows as one.
    let points = |values: &[(Millis, f64)]| -> String {
        values
            .iter()
            .map(|(at, v)| {
                let x = at.since(start) as f64 / span.millis() as f64 * CHART_W;
                let y = CHART_H - v / peak * CHART_H;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.published = points(&series[0]);
    out.completed = points(&series[1]);
    out.failed = points(&series[2]);
    out.peak = peak as u64;
    out.half = format!("{}", peak / 2.0);
    out
}

#[derive(Debug, Clone, serde::Serialize)]
struct QueueLine {
    name: String,
    ready: u64,
    scheduled: u64,
    running: u64,
    failed: u64,
    paused: bool,
    /// Its limits in words (`at most 5 running, 10/s`); empty without.
    limits: String,
    interests: String,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Overview {
    totals: Vec<(&'static str, &'static str, u64)>,
    chart: Chart,
    queues: Vec<QueueLine>,
    queue_count: usize,
    workers: Vec<(&'static str, usize)>,
    worker_count: usize,
    /// With a store several nodes share: the cluster as this node sees it.
    cluster: Option<ClusterPanel>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct ClusterPanel {
    partitions: u32,
    lease_ms: u64,
    nodes: Vec<ClusterNode>,
    /// Partitions no node held at this node's last round, as ranges.
    unowned: String,
    unowned_count: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
struct ClusterNode {
    node: String,
    this: bool,
    count: usize,
    /// Its partitions as ranges: `0-3, 8`.
    partitions: String,
}

impl ClusterPanel {
    fn of(c: crate::store::couchbase::partitions::ClusterView) -> Self {
        Self {
            partitions: c.partitions,
            lease_ms: c.lease_ms,
            nodes: c
                .members
                .into_iter()
                .map(|m| ClusterNode {
                    this: m.node == c.node,
                    count: m.partitions.len(),
                    partitions: ranges(&m.partitions),
                    node: m.node,
                })
                .collect(),
            unowned: ranges(&c.unowned),
            unowned_count: c.unowned.len(),
        }
    }
}

/// Sorted numbers as ranges: `[0, 1, 2, 3, 8]` is `0-3, 8`.
fn ranges(ns: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ns.len() {
        let mut j = i;
        while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ns[i].to_string()
        } else {
            format!("{}-{}", ns[i], ns[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// Queues shown on the overview; the queues page has them all.
const OVERVIEW_QUEUES: usize = 25;

async fn overview_data(state: &AppState, span: Span) -> Result<Overview, PageError> {
    let broker = &state.broker;
    let now = broker.now();
    let samples = broker
        .samples(Millis(now.0.saturating_sub(span.millis())))
        .await?;
    let c = broker.counters().await?;
    let queues = broker.queues().await?;
    let settings = broker.all_queue_settings().await?;
    let workers = broker.workers().await?;
    let by_state = |s: WorkerState| workers.iter().filter(|w| w.state == s).count();
    Ok(Overview {
        totals: vec![
            ("published", "Published", c.published),
            ("routed", "Routed copies", c.routed),
            ("discarded", "Discarded", c.discarded),
            ("completed", "Completed", c.completed),
            ("failed", "Failed", c.failed),
            ("retried", "Retried", c.retried),
        ],
        chart: chart(&samples, span, now),
        queue_count: queues.len(),
        queues: queues
            .iter()
            .take(OVERVIEW_QUEUES)
            .map(|(q, c)| line(q, c, settings.get(q), String::new()))
            .collect(),
        workers: vec![
            ("IDLE", by_state(WorkerState::Idle)),
            ("PROCESSING", by_state(WorkerState::Processing)),
            ("STALE", by_state(WorkerState::Stale)),
        ],
        worker_count: workers.len(),
        cluster: broker.store().stats().cluster.map(ClusterPanel::of),
    })
}

fn line(
    q: &QueueName,
    c: &QueueCounts,
    settings: Option<&QueueSettings>,
    interests: String,
) -> QueueLine {
    let mut limits = Vec::new();
    if let Some(n) = settings.and_then(|s| s.max_running) {
        limits.push(format!("at most {n} running"));
    }
    if let Some(r) = settings.and_then(|s| s.rate_limit) {
        limits.push(format!("{r}/s"));
    }
    if settings.is_some_and(|s| s.publish_output) {
        limits.push("outputs go on as tasks".to_owned());
    }
    QueueLine {
        name: q.to_string(),
        ready: c.ready,
        scheduled: c.scheduled,
        running: c.running,
        failed: c.failed,
        paused: settings.is_some_and(|s| s.paused),
        limits: limits.join(", "),
        interests,
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    o: Overview,
}

/// The overview's query: how much of the chart to show.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    chart: Option<String>,
}

pub async fn overview(req: HttpRequest, state: Data, q: web::Query<OverviewQuery>) -> Res {
    let o = overview_data(&state, Span::of(q.chart.as_deref())?).await?;
    render(OverviewPage {
        chrome: Chrome::new(&req, "Overview", "overview"),
        o,
    })
}

/// The overview's numbers, for its live refresh.
pub async fn overview_json(state: Data, q: web::Query<OverviewQuery>) -> Res {
    let o = overview_data(&state, Span::of(q.chart.as_deref())?).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(o))
}

pub async fn asset(path: web::Path<String>) -> Res {
    let (body, kind) = match path.as_str() {
        "admin.css" => (include_str!("../../web/static/admin.css"), "text/css"),
        "admin.js" => (include_str!("../../web/static/admin.js"), "text/javascript"),
        other => {
            return Err(PageError(ApiError::not_found(
                "not_found",
                format!("no file `{other}`"),
            )))
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(format!("{kind}; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(body))
}

pub async fn not_found(req: HttpRequest) -> Res {
    Err(PageError(ApiError::not_found(
        "not_found",
        format!("there is no page at {}", req.path()),
    )))
}

// ----- queues ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    chrome: Chrome,
    queues: Vec<QueueLine>,
    pager: Pager,
}

const QUEUES_PER_PAGE: usize = 100;

pub async fn queues(req: HttpRequest, state: Data, q: web::Query<ListQuery>) -> Res {
    let page = q.page()?;
    let all = state.broker.queues().await?;
    let settings = state.broker.all_queue_settings().await?;
    let lines: Vec<QueueLine> = all
        .iter()
        .skip((page - 1) * QUEUES_PER_PAGE)
        .take(QUEUES_PER_PAGE)
        .map(|(name, counts)| {
            let shown = state
                .broker
                .interests_of(name)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none: it receives no new tasks".into());
            line(name, counts, settings.get(name), shown)
        })
        .collect();
    let pager = Pager::sized(
        "/admin/queues?",
        page,
        QUEUES_PER_PAGE,
        Some(all.len() as u64),
        lines.len(),
    );
    render(QueuesPage {
        chrome: Chrome::new(&req, "Queues", "queues"),
        queues: lines,
        pager,
    })
}

/// The states a queue page lists, with whether the store counts them.
const LISTED: [TaskState; 6] = [
    TaskState::Ready,
    TaskState::Blocked,
    TaskState::Scheduled,
    TaskState::Running,
    TaskState::Failed,
    TaskState::Completed,
];

fn parse_state(raw: Option<&str>) -> Result<TaskState, PageError> {
    match raw {
        None => Ok(TaskState::Ready),
        Some(s) => LISTED.into_iter().find(|l| l.as_str() == s).ok_or_else(|| {
            bad(
                "state",
                "is one of ready, blocked, scheduled, running, failed, completed",
            )
        }),
    }
}

fn count_of(c: &QueueCounts, s: TaskState) -> Option<u64> {
    match s {
        TaskState::Ready => Some(c.ready),
        TaskState::Scheduled => Some(c.scheduled),
        TaskState::Running => Some(c.running),
        TaskState::Failed => Some(c.failed),
        TaskState::Blocked => Some(c.blocked),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    name: String,
    url_name: String,
    paused: bool,
    interests: Option<String>,
    /// Its fairness groups: the most ready, how many in all, and its
    /// group settings in words.
    groups: Vec<GroupRow>,
    groups_total: usize,
    group_rules: Vec<String>,
    tabs: Vec<(&'static str, Option<u64>, bool)>,
    state: &'static str,
    rows: Vec<TaskRow>,
    pager: Pager,
    back: String,
    search: Search,
    /// The search's parameters, for the tabs' links.
    search_query: String,
    search_action: String,
    hidden: Vec<(&'static str, String)>,
    bulk: BulkBar,
    /// The limits form's fields as they stand.
    limits: LimitFields,
    /// Workers registered on it: id, name, state.
    workers: Vec<(String, String, &'static str)>,
    /// How long its longest-waiting ready copy has waited.
    oldest: Option<String>,
    /// How long its last claimed copies waited, on this node.
    waits: Option<String>,
    /// A finished tab's link to the older copies, in the archive.
    archive_link: Option<String>,
    /// The rows are the archive's, newest first.
    in_archive: bool,
}

/// A queue's limits as its form shows them (empty: none).
struct LimitFields {
    max_running: String,
    rate_limit: String,
    group_max_running: String,
    group_rate_limit: String,
    strict_priority: bool,
    /// The search fields, with commas between.
    search_fields: String,
}

impl LimitFields {
    fn of(s: &QueueSettings) -> Self {
        let text = |v: Option<String>| v.unwrap_or_default();
        Self {
            max_running: text(s.max_running.map(|n| n.to_string())),
            rate_limit: text(s.rate_limit.map(|r| r.to_string())),
            group_max_running: text(s.group_max_running.map(|n| n.to_string())),
            group_rate_limit: text(s.group_rate_limit.map(|r| r.to_string())),
            strict_priority: s.strict_priority,
            search_fields: s.search_fields.join(", "),
        }
    }
}

/// Milliseconds for people: `850 ms`, `2.4 s`, `3m`.
fn millis_text(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => view::duration(ms / 1000),
    }
}

pub async fn queue(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Res {
    let name = queue_name(&path)?;
    let listing = parse_state(q.state.as_deref())?;
    let page = q.page()?;
    let search = q.search()?;
    let broker = &state.broker;
    let counts = broker.queue_counts(&name).await?;
    let interests = broker.interests_of(&name).as_ref().map(view::pretty);
    let settings = broker.queue_settings(&name).await?;
    let paused = settings.paused;
    let groups = broker.groups(&name, GROUPS_SHOWN).await?;
    let group_rules = view::group_rules(&settings);
    let (filter, shown) = q.listing(&search, page)?;
    let in_archive = listing.is_finished() && q.archived.as_deref().is_some_and(|a| a != "0");
    let cursor = |field: &'static str, given: Option<&str>| match given {
        None | Some("") => Ok(None),
        Some(id) => id
            .parse::<TaskId>()
            .map(Some)
            .map_err(|_| bad(field, "is the id of a task in the archive")),
    };
    let (before, after) = match in_archive {
        true => (
            cursor("before", q.before.as_deref())?,
            cursor("after", q.after.as_deref())?,
        ),
        false => (None, None),
    };
    // One more than a page of the archive says whether there is more
    // beyond it, the way it was walked.
    let mut beyond = false;
    let tasks = if in_archive {
        let filter = crate::model::TaskFilter {
            after,
            ..filter.clone()
        };
        let listed = broker
            .list_archived(&name, listing, &filter, before, view::PAGE_SIZE + 1)
            .await;
        let mut tasks = match listed {
            // The page's cursor left the archive (swept, or removed) since
            // the link was made: the archive's newest page, saying so.
            Err(BrokerError::UnknownTask(_)) => {
                let newest = format!(
                    "/admin/queues/{}?state={}&{}archived=1",
                    url_encode(name.as_str()),
                    listing.as_str(),
                    search.query()
                );
                return Ok(see_other(
                    &newest,
                    "The copies of that page have left the archive; this is its newest page",
                ));
            }
            other => other?,
        };
        beyond = tasks.len() > view::PAGE_SIZE;
        if beyond {
            match after {
                // The newest of the page before is one too far.
                Some(_) => drop(tasks.remove(0)),
                None => tasks.truncate(view::PAGE_SIZE),
            }
        }
        tasks
    } else {
        broker
            .list_tasks(Some(&name), listing, &filter, shown)
            .await?
    };
    let now = broker.now();
    let url_name = url_encode(name.as_str());
    let search_query = search.query();
    let base = format!(
        "/admin/queues/{url_name}?state={}&{search_query}",
        listing.as_str()
    );
    // A search's matches are not counted: the pager goes on while pages
    // come back full.
    let total = count_of(&counts, listing).filter(|_| !search.is_active());
    let archive_link = (listing.is_finished() && !in_archive).then(|| format!("{base}archived=1"));
    let pager = if in_archive {
        // A page read newer than another has older ones after it, and one
        // read older has newer ones before it.
        let newer = before.is_some() || (after.is_some() && beyond);
        let older = after.is_some() || (after.is_none() && beyond);
        let link = |dir: &str, t: Option<&Task>| {
            t.map(|t| format!("{base}archived=1&{dir}={}", t.task_id))
        };
        Pager {
            page: 1,
            pages: None,
            total: None,
            prev: newer.then(|| link("after", tasks.first())).flatten(),
            next: older.then(|| link("before", tasks.last())).flatten(),
        }
    } else {
        Pager::new(&base, page, total, tasks.len())
            .with_cursor(search.is_active(), tasks.last().map(|t| t.task_id))
    };
    let mut hidden = vec![("state", listing.as_str().to_owned())];
    if in_archive {
        hidden.push(("archived", "1".to_owned()));
    }
    let back = format!("{base}page={page}");
    let workers = broker.workers().await?;
    let names = view::worker_names(&workers);
    let oldest = match counts.ready {
        0 => None,
        _ => broker
            .oldest_ready(&name)
            .await?
            .map(|at| view::duration(now.since(at) / 1000)),
    };
    let waits = broker.queue_waits(&name).map(|w| {
        format!(
            "median {}, 95th percentile {}, longest {}, over the last {} claims on this node",
            millis_text(w.median),
            millis_text(w.p95),
            millis_text(w.max),
            w.claims
        )
    });
    render(QueuePage {
        limits: LimitFields::of(&settings),
        workers: workers
            .iter()
            .filter(|w| w.queues.contains(&name))
            .map(|w| {
                let id = w.worker_id.to_string();
                let shown = names.get(&id).cloned().unwrap_or_default();
                (id, shown, worker_state(w.state))
            })
            .collect(),
        oldest,
        waits,
        bulk: match in_archive {
            true => BulkBar::new(listing, Some(&name), None, &back).in_archive(),
            false => BulkBar::new(listing, Some(&name), total, &back),
        },
        chrome: Chrome::new(&req, format!("Queue {name}"), "queues"),
        back: back.clone(),
        pager,
        hidden,
        archive_link,
        in_archive,
        search_action: format!("/admin/queues/{url_name}"),
        search,
        search_query,
        rows: tasks
            .iter()
            .map(|t| TaskRow::of(t, now).named(&names))
            .collect(),
        tabs: LISTED
            .iter()
            .map(|s| (s.as_str(), count_of(&counts, *s), *s == listing))
            .collect(),
        state: listing.as_str(),
        name: name.to_string(),
        url_name,
        paused,
        interests,
        groups_total: groups.total,
        groups: groups
            .groups
            .iter()
            .map(|g| GroupRow {
                name: g.group.clone(),
                ready: g.ready,
                running: g.running,
                held: match (g.held.as_deref(), g.held_until) {
                    (Some("rateLimit"), Some(at)) => {
                        format!("rate limit, until {}", view::relative(at, now))
                    }
                    (Some("maxRunning"), _) => "running limit".into(),
                    _ => String::new(),
                },
            })
            .collect(),
        group_rules,
    })
}

/// Groups a queue's page lists, the most ready first.
const GROUPS_SHOWN: usize = 20;

/// One fairness group on a queue's page.
struct GroupRow {
    name: String,
    ready: u64,
    running: u64,
    /// Why its ready copies wait, or empty.
    held: String,
}

/// The limits form as `PUT /queue` parameters: each number field, empty
/// for none (`null`), and the strict priority box.
fn limit_params(form: &Form) -> Result<Map<String, Value>, PageError> {
    let mut p = Map::new();
    for field in [
        "maxRunning",
        "rateLimit",
        "groupMaxRunning",
        "groupRateLimit",
    ] {
        let text = form.get(field).map(str::trim).unwrap_or("");
        let value = match text {
            "" => Value::Null,
            t => match serde_json::from_str::<Value>(t) {
                Ok(n @ Value::Number(_)) => n,
                _ => return Err(bad(field, format!("is a number, not `{t}`"))),
            },
        };
        p.insert(field.into(), value);
    }
    p.insert(
        "strictPriority".into(),
        Value::Bool(form.get("strictPriority").is_some()),
    );
    // Comma-separated text, which `PUT /queue` takes as a list.
    let fields = form.get("searchFields").map(str::trim).unwrap_or("");
    p.insert("searchFields".into(), Value::String(fields.to_owned()));
    Ok(p)
}

/// `POST /admin/queues/{queue}/{action}`: clear, delete (with the name
/// typed in `confirm`), pause (`paused`: true or false), limits.
pub async fn queue_action(
    req: HttpRequest,
    state: Data,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Res {
    let form = Form::read(&req, &body)?;
    let (raw_name, action) = path.into_inner();
    let name = queue_name(&raw_name)?;
    let broker = &state.broker;
    let who = caller_role(&req);
    let own_page = format!("/admin/queues/{}", url_encode(name.as_str()));
    match action.as_str() {
        "clear" => {
            let n = broker.clear_queue(&name, &who).await?;
            Ok(see_other(
                form.back(&own_page),
                &format!("Cleared {name}: {n} task(s) removed"),
            ))
        }
        "delete" => {
            if form.get("confirm").map(str::trim) != Some(name.as_str()) {
                return Err(bad(
                    "confirm",
                    format!("type the queue's name, `{name}`, to delete it"),
                ));
            }
            let n = broker.delete_queue(&name).await?;
            broker
                .audit_event(
                    &who,
                    "delete_queue",
                    name.as_str(),
                    Some(format!("{n} task(s)")),
                )
                .await?;
            Ok(see_other(
                "/admin/queues",
                &format!("Deleted queue {name} and {n} task(s)"),
            ))
        }
        "limits" => {
            let params = Body::from_args(Some(Value::Object(limit_params(&form)?)))?.params()?;
            let change = crate::api::queue::parse_change(&params)?;
            let settings = broker.update_queue_settings(&name, change).await?;
            let detail = serde_json::to_string(&settings).ok();
            broker
                .audit_event(&who, "queue_settings", name.as_str(), detail)
                .await?;
            Ok(see_other(
                form.back(&own_page),
                &format!("Saved the limits of {name}"),
            ))
        }
        "pause" => {
            let paused = match form.required("paused")? {
                "true" => true,
                "false" => false,
                other => return Err(bad("paused", format!("is true or false, not `{other}`"))),
            };
            broker
                .update_queue_settings(
                    &name,
                    crate::broker::SettingsChange {
                        paused: Some(paused),
                        ..Default::default()
                    },
                )
                .await?;
            let (action, done) = if paused {
                ("pause", "Paused")
            } else {
                ("resume", "Resumed")
            };
            broker
                .audit_event(&who, action, name.as_str(), None)
                .await?;
            Ok(see_other(form.back(&own_page), &format!("{done} {name}")))
        }
        _ => not_found(req).await,
    }
}

// ----- tasks ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    t: Task,
    fields: Vec<(&'static str, String)>,
    data: String,
    output: Option<String>,
    progress: Option<String>,
    history: Vec<(String, String, String, String)>,
    lineage: Vec<TaskRow>,
    /// The copy whose output it was (its id, and its state when kept).
    parent: Option<(String, String)>,
    /// The copies its own output became.
    children: Vec<TaskRow>,
    /// What it waits (or waited) for, and what waits for it: the first
    /// `SHOWN_DEPENDENCIES` of each, and how many in all.
    waits_for: Vec<TaskRow>,
    waits_for_total: usize,
    dependants: Vec<TaskRow>,
    dependants_total: usize,
    routed_by: Vec<(String, String, String)>,
    back: String,
    /// What is kept of its log, and where a follower goes on from.
    log: String,
    log_next: u64,
    /// Whether the log may still grow: the page then follows it.
    log_live: bool,
}

/// Dependencies and dependants a task's page lists.
const SHOWN_DEPENDENCIES: usize = 50;

/// The 404 for a task the store does not hold: when its id says it was
/// published, whether it was swept for its age, and how long copies are
/// kept, so that an old link explains itself.
fn not_kept(state: &AppState, id: TaskId) -> PageError {
    let t = &state.settings.tasks;
    let now = state.broker.now();
    let kept = format!(
        "finished copies are kept {} and failed ones {} (at most {} and {} per queue), and removals and deleted queues take theirs at once",
        view::duration(t.keep_finished_secs),
        view::duration(t.keep_failed_secs),
        t.history,
        t.failed_per_queue
    );
    let message = match id.published_at() {
        Some(at) => {
            // A clock behind the id's (another node's, a test's) reads as
            // published just now.
            let age_secs = now.since(at.min(now)) / 1000;
            let swept = if age_secs > t.keep_failed_secs.max(t.keep_finished_secs) {
                "; it is older than any copy is kept, so it was swept"
            } else {
                ""
            };
            format!(
                "`taskId`: task {id} is no longer kept: it was published {} ({}){swept}. Copies end and go: {kept}",
                view::time(at),
                view::relative(at.min(now), now)
            )
        }
        None => format!("`taskId`: no task has the id {id}: interq did not make it"),
    };
    PageError(ApiError::not_found("unknown_task", message))
}

pub async fn task(req: HttpRequest, state: Data, path: web::Path<String>) -> Res {
    let id = task_id(&path)?;
    let broker = &state.broker;
    let t = match broker.task(id).await {
        Ok(t) => t,
        // A publish's id: show its first copy, whose lineage lists the rest.
        Err(BrokerError::UnknownTask(_)) => match broker.lineage(id).await?.into_iter().next() {
            Some(first) if id == id.publish() => {
                return Ok(HttpResponse::Found()
                    .insert_header((header::LOCATION, format!("/admin/tasks/{}", first.task_id)))
                    .finish())
            }
            _ => return Err(not_kept(&state, id)),
        },
        Err(e) => return Err(e.into()),
    };
    let now = broker.now();
    let names = view::worker_names(&broker.workers().await?);
    let held = broker.held_by(t.task_id).await?;
    let opt_time = |m: Option<Millis>| m.map(view::time).unwrap_or_else(|| "—".into());
    let mut fields = vec![
        ("Task id", t.task_id.to_string()),
        ("Publish id", t.publish_id.to_string()),
        ("Queue", t.queue.to_string()),
        ("State", t.state.as_str().to_owned()),
        ("Key", t.key.clone().unwrap_or_else(|| "—".into())),
        ("Group", t.group.clone().unwrap_or_else(|| "—".into())),
        ("Priority", t.priority.0.to_string()),
        ("Attempts", format!("{} of {}", t.attempt, t.max_attempts)),
        ("Publisher", t.publisher.clone()),
        (
            "Created",
            format!(
                "{} ({})",
                view::time(t.created_at),
                view::relative(t.created_at, now)
            ),
        ),
        ("Run at", view::time(t.run_at)),
        ("Expires", opt_time(t.expire_at)),
        (
            "Worker",
            t.worker_id.map_or_else(
                || "—".into(),
                |w| {
                    let id = w.to_string();
                    match names.get(&id) {
                        Some(name) => format!("{name} ({id})"),
                        None => format!("{id} (no longer registered)"),
                    }
                },
            ),
        ),
        ("Lease until", opt_time(t.lease_until)),
        ("Started", opt_time(t.started_at)),
        ("Finished", opt_time(t.finished_at)),
        (
            "Last failure",
            t.fail_reason.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "Singular rules",
            match (t.singularly_enqueue, t.singularly_run) {
                (true, true) => "enqueue and run".into(),
                (true, false) => "enqueue".into(),
                (false, true) => "run".into(),
                (false, false) => "none".into(),
            },
        ),
    ];
    if let Some(why) = held {
        // Next to the state: why a ready copy is not claimed.
        fields.insert(4, ("Held back", why));
    }
    let history = t
        .history
        .iter()
        .map(|e| {
            (
                view::time(e.at),
                e.event.clone(),
                e.worker_id
                    .map(|w| {
                        let id = w.to_string();
                        names.get(&id).cloned().unwrap_or(id)
                    })
                    .unwrap_or_default(),
                e.detail.clone().unwrap_or_default(),
            )
        })
        .collect();
    let lineage = broker
        .lineage(id)
        .await?
        .iter()
        .map(|c| TaskRow::of(c, now))
        .collect();
    let parent = match t.parent {
        Some(p) => Some(match broker.task(p).await {
            Ok(parent) => (p.to_string(), parent.state.as_str().to_owned()),
            Err(BrokerError::UnknownTask(_)) => (p.to_string(), "no longer kept".to_owned()),
            Err(e) => return Err(e.into()),
        }),
        None => None,
    };
    let children = broker
        .children(id)
        .await?
        .iter()
        .map(|c| TaskRow::of(c, now))
        .collect();
    let mut waits_for = Vec::new();
    for d in t.depends_on.iter().take(SHOWN_DEPENDENCIES) {
        if let crate::model::Dependency::Task(dep) = d {
            match broker.task(*dep).await {
                Ok(dep) => waits_for.push(TaskRow::of(&dep, now)),
                // Completed and swept.
                Err(BrokerError::UnknownTask(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let all_dependants = broker.dependants(id).await?;
    let dependants_total = all_dependants.len();
    let dependants = all_dependants
        .iter()
        .take(SHOWN_DEPENDENCIES)
        .map(|c| TaskRow::of(c, now))
        .collect();
    let routed_by = broker
        .try_task(&t.data)
        .into_iter()
        .find(|r| r.queue == t.queue.as_str())
        .map(|r| r.fields)
        .unwrap_or_default();
    let log = broker.task_log(id, None, broker.log_read_max()).await?;
    let log_live = !log.state.has_ended();
    let (from, text) = log.whole_text();
    render(TaskPage {
        log_next: from + text.len() as u64,
        log: text,
        log_live,
        chrome: Chrome::new(&req, format!("Task {id}"), ""),
        back: format!("/admin/tasks/{id}"),
        data: view::pretty(&Value::Object((*t.data).clone())),
        output: t.output.as_ref().map(view::pretty),
        progress: t.progress.as_ref().map(view::pretty),
        fields,
        history,
        lineage,
        parent,
        children,
        waits_for,
        waits_for_total: t.depends_on.len(),
        dependants,
        dependants_total,
        routed_by,
        t,
    })
}

/// `POST /admin/tasks/{id}/{action}`: retry, edit (and retry), remove,
/// run-now.
pub async fn task_action(
    req: HttpRequest,
    state: Data,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Res {
    let form = Form::read(&req, &body)?;
    let (raw_id, action) = path.into_inner();
    let id = task_id(&raw_id)?;
    let broker = &state.broker;
    let who = caller_role(&req);
    let own_page = format!("/admin/tasks/{id}");
    match action.as_str() {
        "retry" => {
            broker.retry(RetryTarget::Task(id), &who).await?;
            Ok(see_other(
                form.back(&own_page),
                &format!("Task {id} will run again"),
            ))
        }
        "run-now" => {
            broker.run_now(id, &who).await?;
            Ok(see_other(
                form.back(&own_page),
                &format!("Task {id} is ready now"),
            ))
        }
        "edit" => {
            let data = json_object("data", form.required("data")?)?;
            let new_id = broker.retry_with_data(id, data, &who).await?;
            Ok(see_other(
                &format!("/admin/tasks/{new_id}"),
                &format!("Retried {id} with the new data as this task"),
            ))
        }
        "cancel" => {
            // Removing a running copy would leave its command running;
            // cancelling tells its worker, which stops it.
            let outcome = broker.cancel(CancelTarget::Task(id), None).await?;
            broker
                .audit_event(&who, "cancel", &id.to_string(), None)
                .await?;
            let message = if !outcome.requested.is_empty() {
                format!("Asked the worker of task {id} to stop it; it ends cancelled when the worker next reports")
            } else if !outcome.cancelled.is_empty() {
                format!("Cancelled task {id}")
            } else {
                format!("Task {id} had already ended; nothing to cancel")
            };
            Ok(see_other(form.back(&own_page), &message))
        }
        "remove" => {
            let queue = broker.task(id).await?.queue;
            broker.remove_task(id, &who).await?;
            let fallback = format!("/admin/queues/{}", url_encode(queue.as_str()));
            // The task's own page is gone.
            let back = match form.back(&fallback) {
                b if b.starts_with(&own_page) => fallback.as_str(),
                b => b,
            };
            Ok(see_other(back, &format!("Removed task {id}")))
        }
        _ => not_found(req).await,
    }
}

// ----- failed and scheduled -------------------------------------------------

#[derive(Template)]
#[template(path = "failed.html")]
struct FailedPage {
    chrome: Chrome,
    rows: Vec<TaskRow>,
    pager: Pager,
    queue: Option<String>,
    back: String,
    search: Search,
    hidden: Vec<(&'static str, String)>,
    /// Each distinct reason: its text, count, the search for it, and
    /// whether it is the search shown.
    reasons: Vec<(String, u64, String, bool)>,
    bulk: BulkBar,
}

async fn total_of(
    state: &AppState,
    s: TaskState,
    queue: Option<&QueueName>,
) -> Result<u64, PageError> {
    let queues = state.broker.queues().await?;
    Ok(queues
        .iter()
        .filter(|(q, _)| queue.is_none_or(|want| *q == want))
        .filter_map(|(_, c)| count_of(c, s))
        .sum())
}

pub async fn failed(req: HttpRequest, state: Data, q: web::Query<ListQuery>) -> Res {
    let page = q.page()?;
    let search = q.search()?;
    let (filter, shown) = q.listing(&search, page)?;
    let queue = q
        .queue
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(queue_name)
        .transpose()?;
    let tasks = state
        .broker
        .list_tasks(queue.as_ref(), TaskState::Failed, &filter, shown)
        .await?;
    let total = match search.is_active() {
        true => None,
        false => Some(total_of(&state, TaskState::Failed, queue.as_ref()).await?),
    };
    let base = match &queue {
        Some(q) => format!("/admin/failed?queue={}&", url_encode(q.as_str())),
        None => "/admin/failed?".into(),
    } + &search.query();
    let now = state.broker.now();
    let within = match &queue {
        Some(q) => format!("queue={}&", url_encode(q.as_str())),
        None => String::new(),
    };
    let reasons = state
        .broker
        .failed_reasons(queue.as_ref())
        .await?
        .into_iter()
        .map(|(reason, n)| {
            let href = format!("/admin/failed?{within}reason={}", url_encode(&reason));
            let current = search.reason == reason;
            (reason, n, href, current)
        })
        .collect();
    let back = format!("{base}page={page}");
    render(FailedPage {
        chrome: Chrome::new(&req, "Failed tasks", "failed"),
        bulk: BulkBar::new(TaskState::Failed, queue.as_ref(), total, &back),
        reasons,
        back: back.clone(),
        pager: Pager::new(&base, page, total, tasks.len())
            .with_cursor(search.is_active(), tasks.last().map(|t| t.task_id)),
        rows: tasks.iter().map(|t| TaskRow::of(t, now)).collect(),
        hidden: queue.iter().map(|q| ("queue", q.to_string())).collect(),
        queue: queue.map(|q| q.to_string()),
        search,
    })
}

pub(super) fn queue_field(form: &Form) -> Result<Option<QueueName>, PageError> {
    form.get("queue")
        .filter(|q| !q.is_empty())
        .map(queue_name)
        .transpose()
}

/// The search a bulk form carries in hidden fields, as the list showed it.
pub(super) fn form_search(body: &[u8]) -> Result<Search, PageError> {
    let q: SearchQuery = serde_urlencoded::from_bytes(body)
        .map_err(|e| bad("form", format!("not a form submission: {e}")))?;
    Search::read(&q).map_err(PageError)
}

pub async fn retry_all(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let queue = queue_field(&form)?;
    let search = form_search(&body)?;
    let actor = caller_role(&req);
    let retried = match search.is_active() {
        true => {
            state
                .broker
                .retry_matching(queue.as_ref(), &search.filter, &actor)
                .await?
        }
        false => {
            state
                .broker
                .retry(RetryTarget::Failed(queue), &actor)
                .await?
        }
    };
    Ok(see_other(
        form.back("/admin/failed"),
        &format!("{} failed task(s) will run again", retried.len()),
    ))
}

pub async fn remove_all(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let queue = queue_field(&form)?;
    let search = form_search(&body)?;
    let actor = caller_role(&req);
    let n = match search.is_active() {
        true => {
            state
                .broker
                .remove_matching(queue.as_ref(), &search.filter, &actor)
                .await?
        }
        false => state.broker.remove_failed(queue, &actor).await?,
    };
    Ok(see_other(
        form.back("/admin/failed"),
        &format!("Removed {n} failed task(s)"),
    ))
}

#[derive(Template)]
#[template(path = "scheduled.html")]
struct ScheduledPage {
    chrome: Chrome,
    rows: Vec<(TaskRow, String)>,
    pager: Pager,
    back: String,
    search: Search,
    hidden: Vec<(&'static str, String)>,
    bulk: BulkBar,
}

pub async fn scheduled(req: HttpRequest, state: Data, q: web::Query<ListQuery>) -> Res {
    let page = q.page()?;
    let search = q.search()?;
    let (filter, shown) = q.listing(&search, page)?;
    let tasks = state
        .broker
        .list_tasks(None, TaskState::Scheduled, &filter, shown)
        .await?;
    let total = match search.is_active() {
        true => None,
        false => Some(total_of(&state, TaskState::Scheduled, None).await?),
    };
    let now = state.broker.now();
    let base = format!("/admin/scheduled?{}", search.query());
    let back = format!("{base}page={page}");
    render(ScheduledPage {
        chrome: Chrome::new(&req, "Scheduled tasks", "scheduled"),
        bulk: BulkBar::new(TaskState::Scheduled, None, total, &back),
        back: back.clone(),
        pager: Pager::new(&base, page, total, tasks.len())
            .with_cursor(search.is_active(), tasks.last().map(|t| t.task_id)),
        search,
        hidden: Vec::new(),
        rows: tasks
            .iter()
            .map(|t| (TaskRow::of(t, now), view::relative(t.run_at, now)))
            .collect(),
    })
}

// ----- workers --------------------------------------------------------------

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    chrome: Chrome,
    workers: Vec<WorkerLine>,
}

struct WorkerLine {
    id: String,
    name: String,
    queues: String,
    state: &'static str,
    running: Vec<String>,
    last_seen: String,
    registered: String,
}

fn worker_state(s: WorkerState) -> &'static str {
    match s {
        WorkerState::Idle => "IDLE",
        WorkerState::Processing => "PROCESSING",
        WorkerState::Stale => "STALE",
    }
}

pub async fn workers(req: HttpRequest, state: Data) -> Res {
    let now = state.broker.now();
    let workers = state
        .broker
        .workers()
        .await?
        .into_iter()
        .map(|w| WorkerLine {
            id: w.worker_id.to_string(),
            name: w.name,
            queues: w
                .queues
                .iter()
                .map(|q| q.as_str())
                .collect::<Vec<_>>()
                .join(" → "),
            state: worker_state(w.state),
            running: w.running.iter().map(|t| t.to_string()).collect(),
            last_seen: view::relative(w.last_seen, now),
            registered: view::time(w.registered_at),
        })
        .collect();
    render(WorkersPage {
        chrome: Chrome::new(&req, "Workers", "workers"),
        workers,
    })
}

pub async fn remove_worker(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    body: web::Bytes,
) -> Res {
    let form = Form::read(&req, &body)?;
    let id: WorkerId = path
        .parse()
        .map_err(|e| bad("workerId", format!("`{path}` is not a worker id: {e}")))?;
    state.broker.delete_worker(id).await?;
    state
        .broker
        .audit_event(&caller_role(&req), "remove_worker", &id.to_string(), None)
        .await?;
    Ok(see_other(
        form.back("/admin/workers"),
        &format!("Removed worker {id}; its running tasks went back to their queues"),
    ))
}

// ----- locks and audit ------------------------------------------------------

#[derive(Template)]
#[template(path = "locks.html")]
struct LocksPage {
    chrome: Chrome,
    locks: Vec<LockLine>,
}

struct LockLine {
    kind: &'static str,
    queue: String,
    task: String,
    /// The holder as people know it: its key, else the start of its data,
    /// else its id.
    shown: String,
    worker: String,
    worker_name: String,
    identity: String,
    /// Twins waiting for it (run locks).
    waiting: u32,
}

/// Keyless holders whose data the Locks page reads to show them by it; the
/// rest are shown by id, so that a page of many locks reads no more.
const LOCK_PREVIEWS: usize = 100;

pub async fn locks(req: HttpRequest, state: Data) -> Res {
    let names = view::worker_names(&state.broker.workers().await?);
    let held = state.broker.locks().await?;
    // People know a task by its key; without one, by what it carries: the
    // data of the first keyless holders, read together.
    let keyless: Vec<TaskId> = held
        .iter()
        .filter(|l| l.key.is_none())
        .map(|l| l.task_id)
        .take(LOCK_PREVIEWS)
        .collect();
    let read =
        futures_util::future::join_all(keyless.iter().map(|&id| state.broker.task(id))).await;
    let previews: HashMap<TaskId, String> = keyless
        .into_iter()
        .zip(read)
        .filter_map(|(id, task)| Some((id, view::preview(&task.ok()?.data))))
        .collect();
    let locks = held
        .into_iter()
        .map(|l| {
            let worker = l.worker_id.map(|w| w.to_string()).unwrap_or_default();
            LockLine {
                kind: l.kind.as_str(),
                queue: l.queue.to_string(),
                task: l.task_id.to_string(),
                shown: l
                    .key
                    .or_else(|| previews.get(&l.task_id).cloned())
                    .unwrap_or_else(|| l.task_id.to_string()),
                worker_name: names
                    .get(&worker)
                    .cloned()
                    .unwrap_or_else(|| worker.clone()),
                worker,
                identity: l.identity,
                waiting: l.waiting,
            }
        })
        .collect();
    render(LocksPage {
        chrome: Chrome::new(&req, "Locks", "locks"),
        locks,
    })
}

pub async fn break_lock(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let id = task_id(form.required("taskId")?)?;
    let kind = match form.required("kind")? {
        "enqueue" => LockKind::Enqueue,
        "run" => LockKind::Run,
        other => return Err(bad("kind", format!("is enqueue or run, not `{other}`"))),
    };
    let broken = state
        .broker
        .break_lock(id, kind, &caller_role(&req))
        .await?;
    let message = if broken {
        format!("Broke the {} lock of {id}", kind.as_str())
    } else {
        format!("Task {id} no longer held a {} lock", kind.as_str())
    };
    Ok(see_other("/admin/locks", &message))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    /// Time, role, action, target, where the target is seen, detail.
    entries: Vec<(String, String, String, String, Option<String>, String)>,
    pager: Pager,
}

/// Where an audit entry's target is seen, when it has a page: a task, a
/// queue, the schedules.
fn audit_link(action: &str, target: &str) -> Option<String> {
    if action == "remove_worker" {
        return None;
    }
    if let Ok(id) = target.parse::<TaskId>() {
        return Some(format!("/admin/tasks/{id}"));
    }
    match action {
        "set_interests" | "remove_interests" | "queue_settings" | "pause" | "resume"
        | "clear_queue" => QueueName::parse(target)
            .ok()
            .map(|q| format!("/admin/queues/{}", url_encode(q.as_str()))),
        "set_schedule" | "edit_schedule" | "pause_schedule" | "resume_schedule"
        | "run_schedule" => Some("/admin/schedules".into()),
        _ => None,
    }
}

pub async fn audit(req: HttpRequest, state: Data, q: web::Query<ListQuery>) -> Res {
    let page = q.page()?;
    let (total, entries) = state
        .broker
        .audit(Page {
            offset: Pager::offset(page),
            limit: PAGE_SIZE,
        })
        .await?;
    render(AuditPage {
        chrome: Chrome::new(&req, "Audit log", "audit"),
        pager: Pager::new("/admin/audit?", page, Some(total), entries.len()),
        entries: entries
            .into_iter()
            .map(|e| {
                let link = audit_link(&e.action, &e.target);
                (
                    view::time(e.at),
                    e.role,
                    e.action,
                    e.target,
                    link,
                    e.detail.unwrap_or_default(),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_read_as_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[0, 1, 2, 3, 8, 10, 11]), "0-3, 8, 10-11");
    }

    fn sample(at: u64, published: u64, completed: u64) -> Sample {
        Sample {
            at: Millis(at),
            counters: Counters {
                published,
                completed,
                ..Counters::default()
            },
        }
    }

    #[test]
    fn the_chart_plots_rates_between_samples_by_time() {
        let h = 3_600_000;
        let samples = [
            sample(h, 0, 0),
            sample(h + 1_800_000, 180_000, 0),
            sample(2 * h, 180_000, 90_000),
            // Not yet: a node with a clock ahead sampled it.
            sample(2 * h + 5_000, 999_999, 0),
        ];
        let c = chart(&samples, Span::Hour, Millis(2 * h));
        // 100/s then 0/s published; 0/s then 50/s completed; peak 100.
        assert_eq!(c.published, "300.0,0.0 600.0,120.0");
        assert_eq!(c.completed, "300.0,120.0 600.0,60.0");
        assert_eq!((c.peak, c.half.as_str()), (100, "50"));
        assert_eq!(
            (c.from.as_str(), c.mid.as_str(), c.to.as_str()),
            ("01:00", "01:30", "02:00 UTC")
        );
        // A day shows the samples on the minute.
        let day = chart(&samples, Span::Day, Millis(2 * h));
        assert_eq!(day.published.split(' ').count(), 2);
        assert_eq!(
            chart(&[sample(0, 1, 1)], Span::Hour, Millis(h)).published,
            ""
        );
    }
}
