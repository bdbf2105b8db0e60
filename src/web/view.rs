//! What the templates show, already formatted: times, previews, pagers.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::model::{Millis, Task};

/// Rows per page of every list.
pub const PAGE_SIZE: usize = 50;

/// A moment as people read it, in UTC.
pub fn time(at: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(at.0 as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| at.0.to_string())
}

/// How long ago (or from now) `at` is, roughly: `5s ago`, `in 3m`.
pub fn relative(at: Millis, now: Millis) -> String {
    let (span, future) = if at > now {
        (at.0 - now.0, true)
    } else {
        (now.0 - at.0, false)
    };
    let text = duration(span / 1000);
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A length of time, roughly: `45s`, `3m`, `7d`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The start of a task's data, on one line.
pub fn preview(data: &Map<String, Value>) -> String {
    let text = Value::Object(data.clone()).to_string();
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return text;
    }
    let mut cut: String = text.chars().take(MAX).collect();
    cut.push('…');
    cut
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// One row of a task list.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub queue: String,
    pub state: &'static str,
    pub priority: i16,
    pub run_at: String,
    pub attempts: String,
    pub age: String,
    pub when: String,
    pub reason: String,
    pub preview: String,
    /// A running copy's worker: its id, and its name for people.
    pub worker_id: String,
    pub worker: String,
    pub started: String,
}

impl TaskRow {
    pub fn of(t: &Task, now: Millis) -> Self {
        Self {
            id: t.task_id.to_string(),
            queue: t.queue.to_string(),
            state: t.state.as_str(),
            priority: t.priority.0,
            run_at: time(t.run_at),
            attempts: format!("{}/{}", t.attempt, t.max_attempts),
            age: relative(t.created_at, now),
            when: t.finished_at.map(time).unwrap_or_default(),
            reason: t.fail_reason.clone().unwrap_or_default(),
            preview: preview(&t.data),
            worker_id: t.worker_id.map(|w| w.to_string()).unwrap_or_default(),
            worker: String::new(),
            started: t.started_at.map(time).unwrap_or_default(),
        }
    }

    /// Names the copy's worker, from the registered workers' names.
    pub fn named(mut self, names: &HashMap<String, String>) -> Self {
        if let Some(name) = names.get(&self.worker_id) {
            self.worker = name.clone();
        } else if !self.worker_id.is_empty() {
            // A worker that is gone is known only by its id.
            self.worker = self.worker_id.chars().take(8).collect();
        }
        self
    }
}

/// Each registered worker's id and the name it goes by: its own, or a
/// short id when it gave none.
pub fn worker_names(workers: &[crate::broker::WorkerView]) -> HashMap<String, String> {
    workers
        .iter()
        .map(|w| {
            let id = w.worker_id.to_string();
            let name = match w.name.is_empty() {
                true => id.chars().take(8).collect(),
                false => w.name.clone(),
            };
            (id, name)
        })
        .collect()
}

/// Where a list is, and links to its neighbours.
#[derive(Debug, Clone)]
pub struct Pager {
    /// 1-based.
    pub page: usize,
    /// `None` when the total is not counted (recent history).
    pub pages: Option<usize>,
    pub total: Option<u64>,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// `base` is the list's address with its other parameters, ending in
    /// `?` or `&`.
    pub fn new(base: &str, page: usize, total: Option<u64>, shown: usize) -> Self {
        Self::sized(base, page, PAGE_SIZE, total, shown)
    }

    /// `new`, for a list of `per_page` rows to a page.
    pub fn sized(
        base: &str,
        page: usize,
        per_page: usize,
        total: Option<u64>,
        shown: usize,
    ) -> Self {
        let pages = total.map(|t| (t as usize).div_ceil(per_page).max(1));
        let has_next = match pages {
            Some(p) => page < p,
            None => shown == per_page,
        };
        Self {
            page,
            pages,
            total,
            prev: (page > 1).then(|| format!("{base}page={}", page - 1)),
            next: has_next.then(|| format!("{base}page={}", page + 1)),
        }
    }

    /// A searched list's next page carries the cursor of this one, its last
    /// copy (see `ListQuery::listing`).
    pub fn with_cursor(mut self, searched: bool, last: Option<crate::model::TaskId>) -> Self {
        if let (true, Some(next), Some(id)) = (searched, self.next.as_mut(), last) {
            next.push_str(&format!("&after={id}"));
        }
        self
    }

    pub fn offset(page: usize) -> usize {
        (page.max(1) - 1) * PAGE_SIZE
    }
}

/// A queue's group settings in words, one line each (none without any).
pub fn group_rules(s: &crate::model::QueueSettings) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = s.group_max_running {
        out.push(format!("at most {n} running per group"));
    }
    if let Some(r) = s.group_rate_limit {
        out.push(format!("at most {r} claims a second per group"));
    }
    if s.strict_priority {
        out.push("priority first across groups".into());
    }
    for (g, own) in &s.groups {
        let mut parts = Vec::new();
        if let Some(n) = own.max_running {
            parts.push(format!("{n} running"));
        }
        if let Some(r) = own.rate_limit {
            parts.push(format!("{r} claims a second"));
        }
        if let Some(w) = own.weight {
            parts.push(format!("weight {w}"));
        }
        out.push(format!("{g}: {}", parts.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Millis(10_000_000);
        assert_eq!(relative(Millis(9_995_000), now), "5s ago");
        assert_eq!(relative(Millis(10_180_000), now), "in 3m");
        assert_eq!(relative(Millis(10_000_000 - 7_200_000), now), "2h ago");
    }

    #[test]
    fn previews_are_cut_on_a_character_boundary() {
        let data = serde_json::json!({"text": "é".repeat(100)});
        let p = preview(data.as_object().expect("object"));
        assert_eq!(p.chars().count(), 81);
        assert!(p.ends_with('…'));
    }

    #[test]
    fn pagers_link_only_to_pages_that_exist() {
        let p = Pager::new("/admin/failed?", 1, Some(120), PAGE_SIZE);
        assert_eq!((p.pages, p.prev.as_deref()), (Some(3), None));
        assert_eq!(p.next.as_deref(), Some("/admin/failed?page=2"));
        let last = Pager::new("/admin/failed?", 3, Some(120), 20);
        assert_eq!(last.next, None);
        let uncounted = Pager::new("/q?state=completed&", 1, None, 10);
        assert_eq!(uncounted.next, None);
        assert_eq!(Pager::new("/x?", 1, Some(0), 0).pages, Some(1));
    }
}
