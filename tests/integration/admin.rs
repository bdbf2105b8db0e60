//! The management site over the real app: every page and every action, CSRF,
//! admin credentials, paging, and the audit log. The browser tests
//! (`browser.rs`) drive the same pages in Chromium.

use interq::auth::new_key;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// A browser-like session: keeps the CSRF cookie, does not follow redirects.
pub struct Site {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
    /// The form token the last page carried.
    token: Option<String>,
    /// An admin key, presented with HTTP Basic as a browser would.
    key: Option<String>,
}

/// A page or an action's answer.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    pub fn html(&self) -> &str {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "unexpected page: {}",
            self.body
        );
        &self.body
    }

    /// Asserts a redirect after an action; returns where to, decoded.
    pub fn redirect(&self) -> String {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "not a redirect: {}",
            self.body
        );
        let to = self.location.clone().expect("a Location");
        percent_decode(&to)
    }

    /// Asserts an error page with `status` whose message names `field`.
    pub fn error(&self, status: u16, field: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected page: {}",
            self.body
        );
        assert!(
            self.body.contains("role=\"alert\""),
            "an error page: {}",
            self.body
        );
        assert!(
            self.body.contains(&format!("<code>{field}"))
                || self.body.contains(&format!("`{field}")),
            "`{field}` is not named in: {}",
            self.body
        );
    }
}

/// An address with its query string decoded, for comparing with text.
fn percent_decode(address: &str) -> String {
    let Some((path, query)) = address.split_once('?') else {
        return address.to_owned();
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("a query");
    let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}", pairs.join("&"))
}

impl Site {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            cookie: None,
            token: None,
            key: None,
        }
    }

    fn with_basic(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    async fn request(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("interq_csrf={c}"));
        }
        if let Some(key) = &self.key {
            req = req.basic_auth("operator", Some(key));
        }
        if let Some(f) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(f).expect("a form"));
        }
        let res = req.send().await.expect("the server answers");
        if let Some(set) = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            if let Some(v) = set.strip_prefix("interq_csrf=") {
                self.cookie = Some(v.split(';').next().unwrap_or_default().to_owned());
            }
        }
        let status = res.status();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.text().await.expect("a body");
        if let Some(at) = body.find(r#"name="csrf" value=""#) {
            let rest = &body[at + r#"name="csrf" value=""#.len()..];
            self.token = rest.split('"').next().map(str::to_owned);
        }
        Page {
            status,
            location,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.request(Method::GET, path, None).await
    }

    /// Posts a form with the session's CSRF token (read from a page first).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        if self.token.is_none() {
            // A page that always holds a form.
            self.get("/admin/interests").await;
        }
        let token = self.token.clone().expect("a CSRF token in the page");
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.request(Method::POST, path, Some(&all)).await
    }

    /// Posts a form as given, token or not.
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.request(Method::POST, path, Some(fields)).await
    }
}

/// Rows of the first table body in `html`.
fn rows(html: &str) -> usize {
    let Some(start) = html.find("<tbody") else {
        return 0;
    };
    let end = html[start..]
        .find("</tbody>")
        .map_or(html.len(), |e| start + e);
    html[start..end].matches("<tr").count()
}

async fn failed_task(app: &TestApp, queue: &str, data: Value, reason: &str) -> String {
    let published = app
        .publish(json!({"data": data, "maxAttempts": 1}))
        .await
        .ok();
    let worker = app.register(&[queue]).await;
    let task = app.claim(&worker).await;
    assert_eq!(task["publishId"], published["taskId"]);
    app.update(&worker, &task, "fail", json!({"failReason": reason}))
        .await
        .ok();
    task["taskId"].as_str().expect("an id").to_owned()
}

async fn audit_actions(site: &mut Site) -> Vec<String> {
    let html = site.get("/admin/audit").await.html().to_owned();
    html.split("<tr><td>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split("</td><td>").collect();
            format!("{} {}", cells[1], cells[2])
        })
        .collect()
}

/// How the audit log names an unlabelled key: `key-` and the first eight
/// hex digits of its digest.
fn key_name(hash: &interq::auth::KeyHash) -> String {
    let text = hash.to_string();
    let digest = text.rsplit(':').next().unwrap();
    format!("key-{}", &digest[..8])
}

#[tokio::test]
async fn every_page_renders_and_the_root_leads_to_the_site() {
    let app = spawn_app().await;
    let mut site = Site::new(&app);
    let root = site.get("/").await;
    assert_eq!(root.status, StatusCode::FOUND);
    assert_eq!(root.location.as_deref(), Some("/admin"));
    for (path, heading, empty) in [
        ("/admin", "Overview", "No queues yet"),
        ("/admin/queues", "Queues", "No queues yet"),
        ("/admin/workers", "Workers", "No worker is registered"),
        ("/admin/failed", "Failed tasks", "No failed tasks"),
        ("/admin/scheduled", "Scheduled tasks", "No scheduled tasks"),
        (
            "/admin/interests",
            "Interests",
            "No queue has interests yet",
        ),
        ("/admin/locks", "Locks", "No lock is held now"),
        ("/admin/audit", "Audit log", "Nothing has been changed"),
    ] {
        let page = site.get(path).await;
        let html = page.html();
        assert!(
            html.contains(&format!("<h1>{heading}</h1>")),
            "{path}: {html}"
        );
        assert!(html.contains(empty), "{path} says what to do when empty");
        assert!(
            html.contains("aria-current=\"page\""),
            "{path} marks its section"
        );
    }
    let css = site.get("/admin/static/admin.css").await;
    assert!(css.html().contains(":root"));
    assert!(site
        .get("/admin/static/admin.js")
        .await
        .html()
        .contains("data-confirm"));
    site.get("/admin/static/nothing.js")
        .await
        .error(404, "nothing.js");
    let missing = site.get("/admin/nowhere").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("there is no page at /admin/nowhere"));
}

#[tokio::test]
async fn pages_carry_security_headers_and_a_csrf_cookie() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/admin", app.base)).await.unwrap();
    let h = res.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert_eq!(h["x-frame-options"], "DENY");
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("interq_csrf="));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
}

#[tokio::test]
async fn the_overview_counts_and_refreshes_from_its_json() {
    let app = spawn_app().await;
    app.put_interest("email", json!({"kind": "^email$"}))
        .await
        .ok();
    app.put_interest("audit", json!("*")).await.ok();
    for i in 0..3 {
        app.publish_data(json!({"kind": "email", "n": i})).await;
    }
    app.publish_data(json!({"kind": "sms"})).await;
    let worker = app.register(&["email"]).await;
    let mut site = Site::new(&app);
    let html = site.get("/admin").await.html().to_owned();
    assert!(
        html.contains(r#"<dd data-total="published">4</dd>"#),
        "{html}"
    );
    assert!(html.contains(r#"<dd data-total="routed">7</dd>"#));
    assert!(html.contains(r#"<dd data-workers="IDLE">1</dd>"#));
    assert!(html.contains(r#"href="/admin/queues/email">email</a></td><td>3</td>"#));
    // The chart needs two samples, taken as the clock passes.
    app.advance(5.0).await;
    app.claim(&worker).await;
    let task = app.claim(&worker).await;
    app.update(&worker, &task, "complete", json!({})).await.ok();
    app.advance(5.0).await;
    let live: Value = serde_json::from_str(site.get("/admin/overview.json").await.html()).unwrap();
    assert_eq!(live["totals"][3], json!(["completed", "Completed", 1]));
    assert_eq!(live["workers"][1], json!(["PROCESSING", 1]));
    assert_eq!(live["queues"][1]["name"], "email");
    assert_eq!(live["queues"][1]["running"], 1);
    let completed = live["chart"]["completed"].as_str().unwrap();
    assert_eq!(
        completed.split(' ').count(),
        2,
        "one rate per pair of samples: {completed}"
    );
    // 4 publishes in the first 5 s, 1 completion in the next: 0.8/s and
    // 0.2/s, drawn against a floor of 1/s, at the end of the hour shown.
    assert_eq!(heights(completed), [120.0, 96.0], "{live}");
    assert_eq!(
        heights(live["chart"]["published"].as_str().unwrap()),
        [24.0, 120.0]
    );
    assert!(completed
        .split(' ')
        .all(|p| p.split(',').next().unwrap().parse::<f64>().unwrap() > 595.0));
    assert_eq!(
        (
            live["chart"]["span"].as_str(),
            live["chart"]["peak"].as_u64()
        ),
        (Some("hour"), Some(1))
    );
    let _ = worker;
}

/// The heights of a chart line's points.
fn heights(points: &str) -> Vec<f64> {
    points
        .split(' ')
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

async fn overview_chart(site: &mut Site, query: &str) -> Value {
    let body = site
        .get(&format!("/admin/overview.json{query}"))
        .await
        .html()
        .to_owned();
    serde_json::from_str::<Value>(&body).unwrap()["chart"].clone()
}

#[tokio::test]
async fn the_throughput_chart_is_the_stores_and_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::helpers::spawn_app_in(dir, |_| {}).await;
    app.put_interest("q", json!("*")).await.ok();
    // Ten minutes of a publish every 5 s.
    for _ in 0..120 {
        app.publish_data(json!({"n": 1})).await;
        app.advance(5.0).await;
    }
    let mut site = Site::new(&app);
    let before = overview_chart(&mut site, "").await;
    let points = before["published"].as_str().unwrap().split(' ').count();
    assert!((118..=120).contains(&points), "a rate per 5 s: {points}");
    assert!(
        heights(before["published"].as_str().unwrap())
            .iter()
            .skip(1)
            .all(|h| *h == 96.0),
        "0.2/s"
    );
    let dir = app.stop().await;
    let app = crate::helpers::spawn_app_in(dir, |_| {}).await;
    let mut site = Site::new(&app);
    // This clock starts again at the wall's time: bring it back to where
    // the first one stopped.
    app.advance(600.0).await;
    let after = overview_chart(&mut site, "").await;
    let kept = heights(after["published"].as_str().unwrap());
    assert!(
        kept.len() >= points,
        "the samples came back from the store: {after}"
    );
    assert!(kept[1..points - 1].iter().all(|h| *h == 96.0), "{after}");
    // The last day shows one sample a minute.
    let day = overview_chart(&mut site, "?chart=day").await;
    let minutes = day["published"].as_str().unwrap().split(' ').count();
    assert!((9..=10).contains(&minutes), "{day}");
    assert_eq!(day["span"], "day");
    let page = site.get("/admin?chart=day").await.html().to_owned();
    assert!(
        page.contains("over the last day")
            && page.contains(r#"<a href="/admin">The last hour</a>"#)
    );
    site.get("/admin?chart=week").await.error(400, "chart");
}

#[tokio::test]
async fn a_queue_page_lists_its_tasks_page_by_page() {
    let app = spawn_app().await;
    app.put_interest("bulk", json!("*")).await.ok();
    let batch: Vec<Value> = (0..120).map(|i| json!({"data": {"n": i}})).collect();
    app.send(Method::PUT, "/task", Some(Value::Array(batch)))
        .await
        .ok();
    app.publish(json!({"data": {"n": "later"}, "runAt": 4_000_000_000u64}))
        .await
        .ok();
    let mut site = Site::new(&app);
    let first = site.get("/admin/queues/bulk").await.html().to_owned();
    assert_eq!(rows(&first), 50);
    assert!(first.contains("Page 1 of 3 · 120 in all"), "{first}");
    assert!(first.contains(r#"href="/admin/queues/bulk?state=ready&#38;page=2""#));
    assert!(first.contains("ready (120)") && first.contains("scheduled (1)"));
    assert!(first.contains("{&#34;n&#34;:0}"), "a preview of the data");
    let last = site
        .get("/admin/queues/bulk?state=ready&page=3")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&last), 20);
    assert!(last.contains("{&#34;n&#34;:119}"));
    assert!(!last.contains("rel=\"next\""));
    let scheduled = site
        .get("/admin/queues/bulk?state=scheduled")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&scheduled), 1);
    let empty = site
        .get("/admin/queues/bulk?state=failed")
        .await
        .html()
        .to_owned();
    assert!(empty.contains("No failed tasks in bulk."));
    site.get("/admin/queues/bulk?state=sleeping")
        .await
        .error(400, "state");
    site.get("/admin/queues/bad%20name")
        .await
        .error(400, "queue");
    site.get("/admin/queues/bulk?page=x")
        .await
        .error(400, "page");
    site.get("/admin/failed?page=0").await.error(400, "page");
    // Past the end: an empty page, not an error.
    let beyond = site
        .get("/admin/queues/bulk?page=9")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&beyond), 0);
}

#[tokio::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    app.publish_data(json!({"a": 1})).await;
    let mut site = Site::new(&app);
    site.get("/admin/interests").await;
    let refused = site.post_raw("/admin/queues/q/clear", &[]).await;
    refused.error(403, "csrf");
    let forged = site
        .post_raw("/admin/queues/q/clear", &[("csrf", &"0".repeat(64))])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // Another session's token is no good either.
    let mut other = Site::new(&app);
    other.get("/admin/interests").await;
    let theirs = other.token.clone().unwrap();
    let crossed = site
        .post_raw("/admin/queues/q/clear", &[("csrf", &theirs)])
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    // Nor a cookie and token the caller picked to agree: the token is the
    // cookie signed with the server's secret.
    let made_up = "ab".repeat(32);
    let mut forger = Site::new(&app);
    forger.cookie = Some(made_up.clone());
    let paired = forger
        .post_raw("/admin/queues/q/clear", &[("csrf", &made_up)])
        .await;
    assert_eq!(paired.status, StatusCode::FORBIDDEN);
    // A good pair sent from another site's page is refused too.
    let from_elsewhere = site
        .client
        .post(format!("{}/admin/queues/q/clear", site.base))
        .header(
            "cookie",
            format!("interq_csrf={}", site.cookie.clone().unwrap()),
        )
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", site.token.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(from_elsewhere.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.queue("q").await["ready"], 1, "nothing was cleared");
    // Actions are never GETs.
    let get = site.get("/admin/queues/q/clear").await;
    assert_ne!(get.status, StatusCode::OK);
    assert_eq!(app.queue("q").await["ready"], 1);
    assert_eq!(audit_actions(&mut site).await, ["open set_interests"]);
}

#[tokio::test]
async fn failed_tasks_are_retried_removed_and_audited() {
    let app = spawn_app().await;
    app.put_interest("jobs", json!({"kind": "^job$"}))
        .await
        .ok();
    let one = failed_task(&app, "jobs", json!({"kind": "job", "n": 1}), "disk full").await;
    let two = failed_task(&app, "jobs", json!({"kind": "job", "n": 2}), "timeout").await;
    let three = failed_task(&app, "jobs", json!({"kind": "job", "n": 3}), "oops").await;
    let mut site = Site::new(&app);
    let html = site.get("/admin/failed").await.html().to_owned();
    assert_eq!(rows(&html), 3);
    assert!(html.contains("disk full") && html.contains("1/1"));
    assert!(html.contains("Page 1 of 1 · 3 in all"));
    // Retry one: it is ready again, with fresh attempts.
    let to = site
        .post(
            &format!("/admin/tasks/{one}/retry"),
            &[("back", "/admin/failed?page=1")],
        )
        .await
        .redirect();
    assert_eq!(
        to,
        format!("/admin/failed?page=1&done=Task {one} will run again")
    );
    let flashed = site
        .get("/admin/failed?page=1&done=Task+x+will+run+again")
        .await;
    assert!(flashed
        .html()
        .contains(r#"<p class="flash" role="status">Task x will run again</p>"#));
    let task = app.status(&format!("task={one}")).await;
    assert_eq!(
        (
            task["task"]["state"].as_str(),
            task["task"]["attempt"].as_u64()
        ),
        (Some("ready"), Some(0))
    );
    // Retrying it again is refused: it is not failed.
    site.post(&format!("/admin/tasks/{one}/retry"), &[])
        .await
        .error(409, "taskId");
    // Remove one, then retry all that is left.
    site.post(
        &format!("/admin/tasks/{two}/remove"),
        &[("back", "/admin/failed")],
    )
    .await
    .redirect();
    assert_eq!(
        app.send(Method::GET, &format!("/status?task={two}"), None)
            .await
            .status,
        404
    );
    let to = site.post("/admin/failed/retry-all", &[]).await.redirect();
    assert!(to.ends_with("done=1 failed task(s) will run again"), "{to}");
    assert_eq!(app.queue("jobs").await["ready"], 2);
    assert_eq!(app.queue("jobs").await["failed"], 0);
    // Remove all of one queue.
    app.put_interest("other", json!({"kind": "^other$"}))
        .await
        .ok();
    failed_task(&app, "other", json!({"kind": "other"}), "again").await;
    let to = site
        .post("/admin/failed/remove-all", &[("queue", "other")])
        .await
        .redirect();
    assert!(to.ends_with("done=Removed 1 failed task(s)"), "{to}");
    site.post("/admin/failed/remove-all", &[("queue", "no such queue!")])
        .await
        .error(400, "queue");
    site.post("/admin/tasks/not-an-id/retry", &[])
        .await
        .error(400, "taskId");
    assert_eq!(
        audit_actions(&mut site).await,
        [
            "open remove_failed",
            "open set_interests",
            "open retry",
            "open remove",
            "open retry",
            "open set_interests"
        ]
    );
    let _ = three;
}

#[tokio::test]
async fn a_failed_task_is_edited_and_retried_as_a_new_task() {
    let app = spawn_app().await;
    app.put_interest("a", json!({"kind": "^x$"})).await.ok();
    app.put_interest("b", json!({"kind": "^x$"})).await.ok();
    let published = app
        .publish(json!({"data": {"kind": "x", "to": "typo"}, "maxAttempts": 1}))
        .await
        .ok();
    let worker = app.register(&["a"]).await;
    let task = app.claim(&worker).await;
    let id = task["taskId"].as_str().unwrap().to_owned();
    app.update(&worker, &task, "fail", json!({"failReason": "bad address"}))
        .await
        .ok();
    let mut site = Site::new(&app);
    let page = site
        .get(&format!("/admin/tasks/{id}"))
        .await
        .html()
        .to_owned();
    assert!(page.contains("bad address"));
    assert!(page.contains(&format!(
        "every copy of publish <code>{}</code>",
        published["taskId"].as_str().unwrap()
    )));
    assert_eq!(
        page.matches("Retry this copy").count(),
        1,
        "only the failed copy"
    );
    assert!(page.contains("<code>kind</code> = <code>x</code> matched <code>^x$</code>"));
    // Bad data changes nothing.
    let path = format!("/admin/tasks/{id}/edit");
    site.post(&path, &[("data", "{not json")])
        .await
        .error(400, "data");
    site.post(&path, &[("data", "[1]")])
        .await
        .error(400, "data");
    site.post(&path, &[]).await.error(400, "data");
    assert_eq!(
        app.status(&format!("task={id}")).await["task"]["state"],
        "failed"
    );
    let to = site
        .post(&path, &[("data", r#"{"kind": "x", "to": "fixed"}"#)])
        .await
        .redirect();
    let new_id = to
        .strip_prefix("/admin/tasks/")
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let old = app.status(&format!("task={id}")).await["task"].clone();
    assert_eq!(old["state"], "cancelled");
    assert!(old["failReason"].as_str().unwrap().contains(&new_id));
    let claimed = app.claim(&worker).await;
    assert_eq!(claimed["taskId"], new_id.as_str());
    assert_eq!(claimed["data"], json!({"kind": "x", "to": "fixed"}));
    let new_page = site.get(&to).await.html().to_owned();
    assert!(new_page.contains("Retried") && new_page.contains("fixed"));
    assert_eq!(
        audit_actions(&mut site).await,
        [
            "open edit_retry",
            "open set_interests",
            "open set_interests"
        ],
        "the API's interest changes are audited too"
    );
}

#[tokio::test]
async fn scheduled_tasks_run_now_or_are_removed() {
    let app = spawn_app().await;
    app.put_interest("later", json!("*")).await.ok();
    let mut ids = Vec::new();
    for at in [4_000_000_000u64, 3_000_000_000] {
        let p = app
            .publish(json!({"data": {"at": at}, "runAt": at}))
            .await
            .ok();
        ids.push(p["copies"][0]["taskId"].as_str().unwrap().to_owned());
    }
    let mut site = Site::new(&app);
    let html = site.get("/admin/scheduled").await.html().to_owned();
    assert_eq!(rows(&html), 2);
    assert!(
        html.find(&ids[1]).unwrap() < html.find(&ids[0]).unwrap(),
        "soonest first"
    );
    site.post(
        &format!("/admin/tasks/{}/run-now", ids[0]),
        &[("back", "/admin/scheduled")],
    )
    .await
    .redirect();
    assert_eq!(app.queue("later").await["ready"], 1);
    site.post(&format!("/admin/tasks/{}/run-now", ids[0]), &[])
        .await
        .error(409, "taskId");
    site.post(&format!("/admin/tasks/{}/remove", ids[1]), &[])
        .await
        .redirect();
    assert_eq!(app.queue("later").await["scheduled"], 0);
    let explode = site
        .post(&format!("/admin/tasks/{}/explode", ids[0]), &[])
        .await;
    assert_eq!(explode.status, StatusCode::NOT_FOUND);
    let explode = site.post("/admin/queues/later/explode", &[]).await;
    assert_eq!(explode.status, StatusCode::NOT_FOUND);
    let unknown = "01a2187b-2e31-76d7-9a9c-389ccabb0000";
    site.post(&format!("/admin/tasks/{unknown}/remove"), &[])
        .await
        .error(404, "taskId");
    assert_eq!(
        audit_actions(&mut site).await,
        ["open remove", "open run_now", "open set_interests"]
    );
}

#[tokio::test]
async fn interests_are_added_edited_tried_and_removed() {
    let app = spawn_app().await;
    let mut site = Site::new(&app);
    let to = site
        .post(
            "/admin/interests",
            &[("queue", "email"), ("interests", r#"{"kind": "^email$"}"#)],
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Saved the interests of email"));
    // Bad input names the field and changes nothing.
    site.post(
        "/admin/interests",
        &[("queue", "email"), ("interests", "{")],
    )
    .await
    .error(400, "interests");
    site.post(
        "/admin/interests",
        &[("queue", "email"), ("interests", r#"{"kind": "("}"#)],
    )
    .await
    .error(400, "interests.kind");
    site.post(
        "/admin/interests",
        &[("queue", "bad name"), ("interests", "\"*\"")],
    )
    .await
    .error(400, "queue");
    site.post("/admin/interests", &[("interests", "\"*\"")])
        .await
        .error(400, "queue");
    let edit = site
        .get("/admin/interests?edit=email")
        .await
        .html()
        .to_owned();
    assert!(edit.contains(r#"name="queue" value="email""#));
    assert!(
        edit.contains(r#"<input name="field" value="kind""#)
            && edit.contains(r#"<input name="value" value="^email$""#),
        "a field and its regex, as written: {edit}"
    );
    let as_json = site
        .get("/admin/interests?edit=email&as=json")
        .await
        .html()
        .to_owned();
    assert!(as_json.contains("&#34;kind&#34;: &#34;^email$&#34;"));
    site.get("/admin/interests?edit=nobody")
        .await
        .error(404, "queue");
    // Try a task.
    let tried = site
        .post(
            "/admin/interests/try",
            &[("task", r#"{"kind": "email", "to": "x"}"#)],
        )
        .await
        .html()
        .to_owned();
    assert!(tried.contains("It would reach 1 queue(s)"));
    assert!(tried.contains("<strong data-reached>email</strong>: <code>kind</code> = <code>email</code> matched <code>^email$</code>"), "{tried}");
    let nobody = site
        .post("/admin/interests/try", &[("task", r#"{"kind": "sms"}"#)])
        .await
        .html()
        .to_owned();
    assert!(nobody.contains("No queue wants this task"));
    site.post("/admin/interests/try", &[("task", "nope")])
        .await
        .error(400, "task");
    // Try a new interest against recent publishes before saving it.
    for kind in ["sms", "sms", "email", "push"] {
        app.publish_data(json!({"kind": kind})).await;
    }
    let preview = site
        .post(
            "/admin/interests",
            &[
                ("queue", "texts"),
                ("interests", r#"{"kind": "^(sms|push)$"}"#),
                ("preview", "1"),
            ],
        )
        .await
        .html()
        .to_owned();
    assert!(
        preview.contains("Of the last <strong>4</strong> task(s)"),
        "{preview}"
    );
    assert!(preview.contains("<strong data-preview-matched>3</strong>"));
    assert!(preview.contains("Nothing was saved."));
    assert!(!app
        .send(Method::GET, "/status?interests", None)
        .await
        .ok()
        .to_string()
        .contains("texts"));
    // Edit, then remove.
    site.post(
        "/admin/interests",
        &[
            ("queue", "email"),
            ("interests", r#"{"kind": "^(email|mail)$"}"#),
        ],
    )
    .await
    .redirect();
    let reached = site
        .post("/admin/interests/try", &[("task", r#"{"kind": "mail"}"#)])
        .await
        .html()
        .to_owned();
    assert!(reached.contains("<strong data-reached>email</strong>"));
    site.post("/admin/interests/email/remove", &[])
        .await
        .redirect();
    site.post("/admin/interests/email/remove", &[])
        .await
        .error(404, "queue");
    assert_eq!(
        audit_actions(&mut site).await,
        [
            "open remove_interests",
            "open set_interests",
            "open set_interests"
        ]
    );
}

#[tokio::test]
async fn singular_locks_are_shown_and_broken() {
    let app = spawn_app().await;
    app.put_interest("deploy", json!("*")).await.ok();
    for _ in 0..3 {
        app.publish(json!({"data": {"app": "web"}, "singularlyRun": true}))
            .await
            .ok();
    }
    let worker = app.register(&["deploy"]).await;
    let running = app.claim(&worker).await;
    let holder = running["taskId"].as_str().unwrap().to_owned();
    let other = app.register(&["deploy"]).await;
    assert_eq!(app.claim_n(&other, 1).await.len(), 0, "the twin waits");
    let mut site = Site::new(&app);
    let html = site.get("/admin/locks").await.html().to_owned();
    assert_eq!(rows(&html), 1);
    assert!(html.contains(&holder) && html.contains(&worker));
    assert!(
        html.contains(&format!(
            "<a href=\"/admin/tasks/{holder}\"><code>{{&#34;app&#34;:&#34;web&#34;}}</code></a>"
        )),
        "a keyless holder is shown by its data: {html}"
    );
    assert!(
        html.contains("</code></td><td>2</td>"),
        "the two twins are counted: {html}"
    );
    let locks = app.status("locks").await["locks"].clone();
    assert_eq!(
        (
            &locks[0]["kind"],
            &locks[0]["taskId"],
            &locks[0]["workerId"],
            &locks[0]["waiting"]
        ),
        (&json!("run"), &json!(holder), &json!(worker), &json!(2)),
        "{locks}"
    );
    site.post(
        "/admin/locks/break",
        &[("taskId", &holder), ("kind", "sideways")],
    )
    .await
    .error(400, "kind");
    site.post("/admin/locks/break", &[("kind", "run")])
        .await
        .error(400, "taskId");
    let to = site
        .post(
            "/admin/locks/break",
            &[("taskId", &holder), ("kind", "run")],
        )
        .await
        .redirect();
    assert!(to.ends_with(&format!("done=Broke the run lock of {holder}")));
    let twin = app.claim_n(&other, 1).await;
    assert_eq!(twin.len(), 1, "the twin runs");
    // Now the twin holds the lock.
    let html = site.get("/admin/locks").await.html().to_owned();
    assert!(html.contains(twin[0]["taskId"].as_str().unwrap()) && !html.contains(&holder));
    assert!(
        html.contains("</code></td><td>1</td>"),
        "one twin is left waiting: {html}"
    );
    let again = site
        .post(
            "/admin/locks/break",
            &[("taskId", &holder), ("kind", "run")],
        )
        .await
        .redirect();
    assert!(again.contains("no longer held"));
    assert_eq!(
        audit_actions(&mut site).await,
        ["open break_lock", "open set_interests"]
    );
    // A lock is named by its holder's key, its worker by name.
    let keyed = app
        .publish(json!({"data": {"app": "api"}, "key": "deploy-api", "singularlyEnqueue": true}))
        .await
        .ok()["copies"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let html = site.get("/admin/locks").await.html().to_owned();
    assert!(
        html.contains(&format!(
            r#"<a href="/admin/tasks/{keyed}"><code>deploy-api</code></a>"#
        )) && html.contains(&format!(
            r#"<a href="/admin/workers#worker-{other}">127.0.0.1:"#
        )),
        "{html}"
    );
}

#[tokio::test]
async fn workers_are_listed_and_removed() {
    let app = spawn_app().await;
    app.put_interest("a", json!("*")).await.ok();
    app.put_interest("b", json!("*")).await.ok();
    app.publish_data(json!({"x": 1})).await;
    let worker = app.register(&["b", "a"]).await;
    let task = app.claim(&worker).await;
    let mut site = Site::new(&app);
    let html = site.get("/admin/workers").await.html().to_owned();
    assert!(html.contains("b → a"), "queues in order");
    assert!(html.contains(r#"<span class="state PROCESSING">PROCESSING</span>"#));
    assert!(html.contains(task["taskId"].as_str().unwrap()));
    site.post(&format!("/admin/workers/{worker}/remove"), &[])
        .await
        .redirect();
    assert!(site
        .get("/admin/workers")
        .await
        .html()
        .contains("No worker is registered"));
    assert_eq!(app.queue("b").await["ready"], 1, "its task went back");
    site.post(&format!("/admin/workers/{worker}/remove"), &[])
        .await
        .error(404, "workerId");
    site.post("/admin/workers/xyz/remove", &[])
        .await
        .error(400, "workerId");
}

#[tokio::test]
async fn queues_are_paused_cleared_and_deleted_with_confirmation() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    for i in 0..3 {
        app.publish_data(json!({"i": i})).await;
    }
    let mut site = Site::new(&app);
    site.post("/admin/queues/q/pause", &[("paused", "true")])
        .await
        .redirect();
    assert!(site
        .get("/admin/queues")
        .await
        .html()
        .contains("<span class=\"badge\">paused</span>"));
    let worker = app.register(&["q"]).await;
    assert_eq!(app.claim_n(&worker, 1).await.len(), 0, "paused");
    site.post("/admin/queues/q/pause", &[("paused", "maybe")])
        .await
        .error(400, "paused");
    site.post("/admin/queues/q/pause", &[("paused", "false")])
        .await
        .redirect();
    assert_eq!(app.claim_n(&worker, 1).await.len(), 1);
    let to = site.post("/admin/queues/q/clear", &[]).await.redirect();
    assert!(to.ends_with("done=Cleared q: 3 task(s) removed"), "{to}");
    app.publish_data(json!({"i": 9})).await;
    site.post("/admin/queues/q/delete", &[("confirm", "other")])
        .await
        .error(400, "confirm");
    assert_eq!(app.queue("q").await["ready"], 1, "nothing deleted");
    site.post("/admin/queues/q/delete", &[("confirm", "q")])
        .await
        .redirect();
    assert!(site
        .get("/admin/queues")
        .await
        .html()
        .contains("No queues yet"));
    assert_eq!(
        audit_actions(&mut site).await,
        [
            "open delete_queue",
            "open clear_queue",
            "open resume",
            "open pause",
            "open set_interests"
        ]
    );
}

#[tokio::test]
async fn a_task_page_shows_history_and_a_publish_id_leads_to_its_first_copy() {
    let app = spawn_app().await;
    app.put_interest("a", json!("*")).await.ok();
    app.put_interest("b", json!("*")).await.ok();
    let published = app
        .publish(json!({"data": {"n": 1}, "key": "build-7"}))
        .await
        .ok();
    let worker = app.register(&["a"]).await;
    let task = app.claim(&worker).await;
    app.update(&worker, &task, "complete", json!({"output": {"ok": true}}))
        .await
        .ok();
    let mut site = Site::new(&app);
    let publish_id = published["taskId"].as_str().unwrap();
    let first = site.get(&format!("/admin/tasks/{publish_id}")).await;
    assert_eq!(first.status, StatusCode::FOUND);
    let to = first.location.unwrap();
    let html = site.get(&to).await.html().to_owned();
    for text in [
        "build-7",
        "completed",
        "claimed",
        "&#34;ok&#34;: true",
        "<h2 id=\"lineage-h\">",
    ] {
        assert!(html.contains(text), "{text} in {html}");
    }
    assert_eq!(
        html.matches("<span class=\"state ready\">ready</span>")
            .count(),
        1,
        "the copy in b"
    );
    site.get("/admin/tasks/01a2187b-2e31-76d7-9a9c-389ccabb0001")
        .await
        .error(404, "taskId");
}

#[tokio::test]
async fn a_task_no_longer_kept_says_when_it_was_published_and_why_it_went() {
    let app = spawn_app().await;
    let mut site = Site::new(&app);
    app.put_interest("q", json!("*")).await.ok();
    let published = app.publish(json!({"data": {"n": 1}})).await.ok();
    let copy = published["copies"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    site.post(&format!("/admin/tasks/{copy}/remove"), &[])
        .await
        .redirect();
    let gone = site.get(&format!("/admin/tasks/{copy}")).await;
    gone.error(404, "taskId");
    let html = &gone.body;
    assert!(
        html.contains("is no longer kept: it was published"),
        "{html}"
    );
    assert!(
        html.contains("s ago)") && !html.contains("so it was swept"),
        "{html}"
    );
    assert!(
        html.contains("finished copies are kept 7d and failed ones 30d"),
        "{html}"
    );
    // An id from a year ago: older than anything is kept.
    let year_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(365 * 86_400);
    let secs = year_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, 0));
    let html = site.get(&format!("/admin/tasks/{old}")).await;
    html.error(404, "taskId");
    assert!(html.body.contains("so it was swept"), "{}", html.body);
    // An id interq did not make (no time in it).
    let foreign = uuid::Uuid::new_v4();
    let html = site.get(&format!("/admin/tasks/{foreign}")).await;
    html.error(404, "taskId");
    assert!(
        html.body.contains("interq did not make it"),
        "{}",
        html.body
    );
}

#[tokio::test]
async fn the_site_asks_for_admin_credentials_when_keys_are_set() {
    let (admin, admin_hash) = new_key();
    let (publisher, publisher_hash) = new_key();
    let app = spawn_app_with(|s| {
        s.auth.admin = vec![admin_hash.to_string()];
        s.auth.publisher = vec![publisher_hash.to_string()];
    })
    .await;
    let mut anonymous = Site::new(&app);
    let refused = anonymous.get("/admin").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let res = reqwest::get(format!("{}/admin/failed", app.base))
        .await
        .unwrap();
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("Basic"));
    assert_eq!(anonymous.get("/").await.status, StatusCode::UNAUTHORIZED);
    let mut publisher_site = Site::new(&app).with_basic(&publisher);
    assert_eq!(
        publisher_site.get("/admin").await.status,
        StatusCode::FORBIDDEN
    );
    let mut site = Site::new(&app).with_basic(&admin);
    let top = site.get("/admin").await.html().to_owned();
    assert!(top.contains(r#"<span class="role""#));
    assert!(
        top.contains("signed in: admin ("),
        "the top bar says auth is on"
    );
    assert!(!top.contains("auth off"));
    // Without keys, the top bar says so plainly.
    let open = spawn_app().await;
    let page = Site::new(&open).get("/admin").await.html().to_owned();
    assert!(page.contains("auth off: anyone who can reach this address may act"));
    site.post(
        "/admin/interests",
        &[("queue", "q"), ("interests", "\"*\"")],
    )
    .await
    .redirect();
    assert_eq!(
        audit_actions(&mut site).await,
        [format!("admin ({}) set_interests", key_name(&admin_hash))]
    );
}

#[tokio::test]
async fn a_thousand_queues_are_paged() {
    let app = spawn_app().await;
    let updates: Vec<Value> = (0..1000)
        .map(|i| json!({"queue": format!("q{i:04}"), "interests": {"n": format!("^{i}$")}}))
        .collect();
    app.send(Method::PUT, "/interest", Some(Value::Array(updates)))
        .await
        .ok();
    let mut site = Site::new(&app);
    let first = site.get("/admin/queues").await.html().to_owned();
    assert_eq!(rows(&first), 100);
    assert!(first.contains("Page 1 of 10 · 1000 in all"));
    let last = site.get("/admin/queues?page=10").await.html().to_owned();
    assert!(last.contains("q0999") && !last.contains("q0899<"));
    let overview = site.get("/admin").await.html().to_owned();
    assert!(overview.contains("All 1000 queues"));
    assert_eq!(rows(&overview), 25);
}

#[tokio::test]
async fn admin_changes_through_the_api_are_audited_too() {
    let (admin, admin_hash) = new_key();
    let app = spawn_app_with(|s| s.auth.admin = vec![admin_hash.to_string()]).await;
    let client = reqwest::Client::new();
    let call = |method: Method, path: &str, body: Value| {
        client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let ok = |r: reqwest::Response| assert_eq!(r.status(), StatusCode::OK, "{r:?}");
    ok(call(
        Method::PUT,
        "/interest",
        json!({"queue": "q", "interests": "*"}),
    )
    .await
    .unwrap());
    let batch = json!([
        {"queue": "a", "interests": "*"},
        {"queue": "b", "interests": {"x": "^y$"}}
    ]);
    ok(call(Method::PUT, "/interest", batch).await.unwrap());
    ok(
        call(Method::PUT, "/queue", json!({"queue": "q", "paused": true}))
            .await
            .unwrap(),
    );
    ok(call(
        Method::PUT,
        "/schedule",
        json!({"name": "tick", "every": 60, "task": {"data": {}}}),
    )
    .await
    .unwrap());
    ok(call(Method::DELETE, "/schedule", json!({"name": "tick"}))
        .await
        .unwrap());
    ok(call(Method::DELETE, "/task", json!({"queue": "q"}))
        .await
        .unwrap());
    ok(call(Method::DELETE, "/interest", json!({"queue": "a"}))
        .await
        .unwrap());
    ok(call(Method::DELETE, "/queue", json!({"queue": "b"}))
        .await
        .unwrap());
    // A refused change is not audited.
    let bad = call(
        Method::PUT,
        "/interest",
        json!({"queue": "q", "interests": {"x": "("}}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let mut site = Site::new(&app).with_basic(&admin);
    let who = format!("admin ({})", key_name(&admin_hash));
    let expected: Vec<String> = [
        "delete_queue",
        "remove_interests",
        "remove_tasks",
        "remove_schedule",
        "set_schedule",
        "queue_settings",
        "set_interests",
        "set_interests",
    ]
    .iter()
    .map(|a| format!("{who} {a}"))
    .collect();
    assert_eq!(audit_actions(&mut site).await, expected);
    let html = site.get("/admin/audit").await.html().to_owned();
    assert!(
        html.contains("<code>2 queues</code>") && html.contains("a, b"),
        "{html}"
    );
}

#[tokio::test]
async fn a_task_is_cancelled_from_its_page_and_a_running_one_through_its_worker() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let running = app.publish_data(json!({"n": 1})).await;
    let waiting = app.publish_data(json!({"n": 2})).await;
    let (running, waiting) = (
        running["copies"][0]["taskId"].as_str().unwrap().to_owned(),
        waiting["copies"][0]["taskId"].as_str().unwrap().to_owned(),
    );
    let worker = app.register(&["q"]).await;
    let claimed = app.claim(&worker).await;
    assert_eq!(claimed["taskId"], json!(running));

    let mut site = Site::new(&app);
    let page = site
        .get(&format!("/admin/tasks/{running}"))
        .await
        .html()
        .to_owned();
    assert!(page.contains("ask its worker to stop"), "{page}");
    site.post(&format!("/admin/tasks/{running}/cancel"), &[])
        .await
        .redirect();
    // Still running, flagged: its worker learns it at its next heartbeat.
    let beat = app
        .update(&worker, &claimed, "progress", json!({}))
        .await
        .ok();
    assert_eq!(beat["cancelled"], true, "{beat}");
    let page = site
        .get(&format!("/admin/tasks/{running}"))
        .await
        .html()
        .to_owned();
    assert!(page.contains("cancellation requested"));
    assert!(!page.contains("/cancel\""), "no second cancel: {page}");
    app.update(
        &worker,
        &claimed,
        "fail",
        json!({"failReason": "cancelled"}),
    )
    .await
    .ok();
    assert_eq!(
        app.status(&format!("task={running}")).await["task"]["state"],
        "cancelled"
    );

    // A waiting copy ends at once.
    let page = site
        .get(&format!("/admin/tasks/{waiting}"))
        .await
        .html()
        .to_owned();
    assert!(page.contains(&format!("/admin/tasks/{waiting}/cancel")));
    site.post(&format!("/admin/tasks/{waiting}/cancel"), &[])
        .await
        .redirect();
    assert_eq!(
        app.status(&format!("task={waiting}")).await["task"]["state"],
        "cancelled"
    );
    let done = site
        .get(&format!("/admin/tasks/{waiting}"))
        .await
        .html()
        .to_owned();
    assert!(
        !done.contains("/cancel\""),
        "an ended task offers no cancel"
    );

    let unknown = "01a2187b-2e31-76d7-9a9c-389ccabb0000";
    site.post(&format!("/admin/tasks/{unknown}/cancel"), &[])
        .await
        .error(404, "taskId");
    let audit = audit_actions(&mut site).await;
    assert_eq!(
        audit.iter().filter(|a| *a == "open cancel").count(),
        2,
        "{audit:?}"
    );
}

#[tokio::test]
async fn named_schedules_have_a_page_to_run_now_and_delete_them() {
    let app = spawn_app().await;
    app.put_interest("reports", json!({"kind": "^report$"}))
        .await
        .ok();
    let mut site = Site::new(&app);
    let empty = site.get("/admin/schedules").await.html().to_owned();
    assert!(empty.contains("No schedules"), "{empty}");
    for body in [
        json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris", "task": {"data": {"kind": "report"}}}),
        json!({"name": "often", "every": 600, "task": {"data": {"kind": "report", "n": 2}}}),
    ] {
        app.send(Method::PUT, "/schedule", Some(body)).await.ok();
    }
    let before = app.status("schedules").await["schedules"].clone();
    let page = site.get("/admin/schedules").await.html().to_owned();
    assert_eq!(rows(&page), 2);
    for text in [
        "nightly",
        "cron 0 3 * * *",
        "Europe/Paris",
        "every 600 s",
        "not yet",
        "report",
    ] {
        assert!(page.contains(text), "{text} in {page}");
    }
    assert!(page.contains(r#"href="/admin/schedules" aria-current="page""#));

    site.post("/admin/schedules/nightly/run-now", &[])
        .await
        .redirect();
    assert_eq!(app.queue("reports").await["ready"], 1);
    // Its own timing is untouched.
    let after = app.status("schedules").await["schedules"].clone();
    assert_eq!(before, after, "run now leaves the next run as it was");

    site.post("/admin/schedules/often/delete", &[])
        .await
        .redirect();
    let names: Vec<Value> = app.status("schedules").await["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, [json!("nightly")]);
    site.post("/admin/schedules/often/run-now", &[])
        .await
        .error(404, "often");
    let explode = site.post("/admin/schedules/nightly/explode", &[]).await;
    assert_eq!(explode.status, StatusCode::NOT_FOUND);
    // Without the form's token, nothing happens.
    site.post_raw("/admin/schedules/nightly/delete", &[])
        .await
        .error(403, "csrf");
    assert_eq!(
        app.status("schedules").await["schedules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let audit = audit_actions(&mut site).await;
    assert!(audit.contains(&"open run_schedule".to_owned()), "{audit:?}");
    assert!(
        audit.contains(&"open delete_schedule".to_owned()),
        "{audit:?}"
    );
}

#[tokio::test]
async fn the_interests_page_lists_a_page_at_a_time_and_finds_by_name() {
    let app = spawn_app().await;
    let all: Vec<Value> = (0..250)
        .map(|i| json!({"queue": format!("team-{}-q{i:03}", i % 2), "interests": {"n": format!("^{i}$")}}))
        .collect();
    app.send(Method::PUT, "/interest", Some(json!(all)))
        .await
        .ok();
    let mut site = Site::new(&app);
    let rows = |html: &str| html.matches("<td><pre>").count();
    let first = site.get("/admin/interests").await.html().to_owned();
    assert_eq!(rows(&first), 100);
    assert!(first.contains(r#"data-found="250""#), "{first}");
    assert!(first.contains("Page 1 of 3"));
    assert!(
        first.contains(r#"href="/admin/interests?page=2" rel="next""#),
        "{first}"
    );
    let last = site.get("/admin/interests?page=3").await.html().to_owned();
    assert_eq!(rows(&last), 50);
    assert!(last.contains("team-1-q249") && !last.contains("team-0-q000"));
    // Found by part of the name, paged within what was found.
    let found = site
        .get("/admin/interests?find=team-1")
        .await
        .html()
        .to_owned();
    assert!(found.contains(r#"data-found="125""#), "{found}");
    assert_eq!(rows(&found), 100);
    assert!(!found.contains("team-0-"));
    assert!(
        found.contains(r#"href="/admin/interests?find=team-1&#38;page=2""#),
        "{found}"
    );
    let second = site
        .get("/admin/interests?find=team-1&page=2")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&second), 25);
    let none = site
        .get("/admin/interests?find=nobody")
        .await
        .html()
        .to_owned();
    assert!(none.contains(r#"data-found="0""#) && rows(&none) == 0);
    site.get("/admin/interests?page=zero")
        .await
        .error(400, "page");
}

#[tokio::test]
async fn task_lists_are_searched_and_their_links_keep_the_search() {
    let app = spawn_app().await;
    app.put_interest("bulk", json!("*")).await.ok();
    let batch: Vec<Value> = (0..120)
        .map(|i| json!({"data": {"n": i, "email": format!("user{i}@{}", if i % 2 == 0 { "x.org" } else { "y.org" })}}))
        .collect();
    app.send(Method::PUT, "/task", Some(Value::Array(batch)))
        .await
        .ok();
    let mut site = Site::new(&app);
    let found = site
        .get("/admin/queues/bulk?state=ready&data=email%3D*%40x.org")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&found), 50);
    assert!(
        !found.contains("in all"),
        "matches are not counted: {found}"
    );
    // The next page keeps the search, and goes on after this page's last
    // copy rather than counting up to its offset.
    let next_link =
        r#"href="/admin/queues/bulk?state=ready&#38;data=email%3D*%40x.org&#38;page=2&#38;after="#;
    let at = found
        .find(next_link)
        .unwrap_or_else(|| panic!("the next page keeps the search: {found}"))
        + next_link.len();
    let cursor = &found[at..at + found[at..].find('"').unwrap()];
    let listed = app
        .send(
            Method::GET,
            "/tasks?state=ready&queue=bulk&data=email%3D*%40x.org&limit=50",
            None,
        )
        .await
        .ok();
    assert_eq!(cursor, listed[49]["taskId"].as_str().unwrap());
    let by_cursor = site
        .get(&format!(
            "/admin/queues/bulk?state=ready&data=email%3D*%40x.org&page=2&after={cursor}"
        ))
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&by_cursor), 10);
    site.get("/admin/queues/bulk?state=ready&data=email%3D*%40x.org&page=2&after=last")
        .await
        .error(400, "after");
    assert!(
        found.contains(r#"name="data" value="email=*@x.org""#),
        "the form shows it"
    );
    assert!(found.contains("Clear the search"));
    let second = site
        .get("/admin/queues/bulk?state=ready&data=email%3D*%40x.org&page=2")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&second), 10, "60 match in all");
    assert!(!second.contains("rel=\"next\""));
    let one = site
        .get("/admin/queues/bulk?data=n%3D7*")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&one), 11, "7 and 70 to 79");
    let none = site
        .get("/admin/queues/bulk?state=ready&publisher=nobody")
        .await
        .html()
        .to_owned();
    assert!(
        none.contains("No ready task in bulk matches this search."),
        "{none}"
    );
    let plain = site.get("/admin/queues/bulk").await.html().to_owned();
    assert!(!plain.contains("Clear the search"));

    // Failed, by reason; the bulk buttons stand aside while a search is on.
    app.put_interest("mail", json!({"id": "."})).await.ok();
    failed_task(&app, "mail", json!({"id": 1}), "SMTP refused").await;
    failed_task(&app, "mail", json!({"id": 2}), "timed out").await;
    let failed = site
        .get("/admin/failed?reason=smtp")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&failed), 1);
    let table = &failed[failed.find("<tbody>").expect("a table")..];
    assert!(table.contains("SMTP refused") && !table.contains("timed out"));
    assert!(
        failed.contains("Retry all matching")
            && failed.contains(r#"<input type="hidden" name="reason" value="smtp">"#)
    );
    let all = site.get("/admin/failed").await.html().to_owned();
    assert_eq!(rows(&all), 2);
    assert!(all.contains("/admin/failed/retry-all"));

    // Failed grouped by reason, each group a search.
    failed_task(&app, "mail", json!({"id": 3}), "SMTP refused\n  at line 3").await;
    let grouped = site.get("/admin/failed").await.html().to_owned();
    let smtp = grouped.find(
        r#"href="/admin/failed?reason=SMTP+refused">SMTP refused</a> <span class="count">2</span>"#,
    );
    let timed = grouped.find(
        r#"href="/admin/failed?reason=timed+out">timed out</a> <span class="count">1</span>"#,
    );
    assert!(smtp.is_some() && timed.is_some(), "{grouped}");
    assert!(smtp < timed, "most first");
    let of_mail = site.get("/admin/failed?queue=mail").await.html().to_owned();
    assert!(
        of_mail.contains(r#"href="/admin/failed?queue=mail&#38;reason=SMTP+refused""#),
        "{of_mail}"
    );
    let chosen = site
        .get("/admin/failed?reason=SMTP+refused")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&chosen), 2);
    assert!(chosen.contains(r#"aria-current="true">SMTP refused"#));
    let api = app.status("failedReasons").await;
    assert_eq!(
        api["failedReasons"],
        json!([{"reason": "SMTP refused", "count": 2}, {"reason": "timed out", "count": 1}])
    );
    assert_eq!(
        app.status("failedReasons=bulk").await["failedReasons"],
        json!([])
    );
    app.send(Method::GET, "/status?failedReasons=a%20b", None)
        .await
        .error(400, "invalid_field", Some("failedReasons"));

    // Bulk actions act on what the search matches, and only that.
    let to = site
        .post(
            "/admin/failed/retry-all",
            &[("reason", "smtp"), ("data", "id=1")],
        )
        .await
        .redirect();
    assert!(to.ends_with("done=1 failed task(s) will run again"), "{to}");
    let to = site
        .post(
            "/admin/failed/remove-all",
            &[("queue", "mail"), ("reason", "SMTP")],
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Removed 1 failed task(s)"), "{to}");
    assert_eq!(
        app.queue("mail").await["failed"],
        1,
        "the timed out one stays"
    );
    site.post("/admin/failed/retry-all", &[("since", "soon")])
        .await
        .error(400, "since");
    assert_eq!(
        app.queue("mail").await["failed"],
        1,
        "a bad search changes nothing"
    );
    assert_eq!(
        audit_actions(&mut site).await[..2],
        ["open remove", "open retry"]
    );
    let audit = site.get("/admin/audit").await.html().to_owned();
    assert!(
        audit.contains("failed of every queue matching reason~smtp, id=1")
            && audit.contains("failed of mail matching reason~SMTP"),
        "{audit}"
    );
    let scheduled = site
        .get("/admin/scheduled?since=2000-01-01")
        .await
        .html()
        .to_owned();
    assert!(scheduled.contains("No scheduled task matches this search."));

    for (path, field) in [
        ("/admin/queues/bulk?data=email", "data"),
        ("/admin/failed?since=soon", "since"),
        ("/admin/scheduled?since=20&until=10", "until"),
        ("/admin/failed?key=a%07b", "key"),
    ] {
        site.get(path).await.error(400, field);
    }
}

#[tokio::test]
async fn the_overview_and_the_queues_page_mark_paused_and_limited_queues() {
    let app = spawn_app().await;
    let mut site = Site::new(&app);
    for q in ["plain", "held", "slow"] {
        app.put_interest(q, json!("*")).await.ok();
    }
    app.publish(json!({"data": {"n": 1}})).await.ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "held", "paused": true})),
    )
    .await
    .ok();
    app.send(
        Method::PUT,
        "/queue",
        Some(json!({"queue": "slow", "maxRunning": 5, "rateLimit": 2.5})),
    )
    .await
    .ok();
    for page in ["/admin", "/admin/queues"] {
        let html = site.get(page).await.html().to_owned();
        let row = |name: &str| {
            let at = html.find(&format!(">{name}</a>")).expect("the queue's row");
            html[at..at + html[at..].find("</td>").unwrap()].to_owned()
        };
        assert!(
            row("held").contains(r#"<span class="badge">paused</span>"#),
            "{page}: {html}"
        );
        assert!(
            row("slow").contains("at most 5 running, 2.5/s"),
            "{page}: {html}"
        );
        assert!(!row("plain").contains("badge"), "{page}: {html}");
    }
    let live = site.get("/admin/overview.json").await;
    let o: Value = serde_json::from_str(&live.body).unwrap();
    let slow = o["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "slow")
        .unwrap()
        .clone();
    assert_eq!(slow["limits"], "at most 5 running, 2.5/s");
    assert_eq!(slow["paused"], false);
}

#[tokio::test]
async fn a_schedule_is_paused_resumed_and_edited_from_its_page() {
    let app = spawn_app().await;
    app.put_interest("reports", json!("*")).await.ok();
    app.send(
        Method::PUT,
        "/schedule",
        Some(json!({"name": "often", "every": 600, "task": {"data": {"kind": "report"}, "priority": "high"}})),
    )
    .await
    .ok();
    let mut site = Site::new(&app);
    let page = site.get("/admin/schedules").await.html().to_owned();
    assert!(
        page.contains(r#"aria-label="Pause schedule often""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<input name="every" value="600""#),
        "the edit form holds it: {page}"
    );
    let to = site
        .post("/admin/schedules/often/pause", &[])
        .await
        .redirect();
    assert!(to.ends_with("done=Paused schedule often"), "{to}");
    let page = site.get("/admin/schedules").await.html().to_owned();
    assert!(
        page.contains(r#"<span class="badge">paused</span>"#) && page.contains(">paused</td>"),
        "{page}"
    );
    app.advance(1200.0).await;
    assert_eq!(
        app.queue("reports").await["ready"],
        0,
        "a paused schedule does not fire"
    );
    let to = site
        .post("/admin/schedules/often/resume", &[])
        .await
        .redirect();
    assert!(
        to.contains("done=Resumed schedule often; its next run is"),
        "{to}"
    );

    // The edit form's task as it was shown is accepted back as it is.
    let task = app.status("schedules").await["schedules"][0]["task"].clone();
    let shown = serde_json::to_string_pretty(&task).unwrap();
    let to = site
        .post(
            "/admin/schedules/often/edit",
            &[
                ("cron", "*/5 * * * *"),
                ("timezone", "Europe/Paris"),
                ("every", ""),
                ("at", ""),
                ("task", &shown),
            ],
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Saved schedule often"), "{to}");
    let s = app.status("schedules").await["schedules"][0].clone();
    assert_eq!(
        s["spec"],
        json!({"cron": {"expr": "*/5 * * * *", "timezone": "Europe/Paris"}})
    );
    assert_eq!(s["task"], task, "the task came back unchanged");

    // Bad edits are refused by field and change nothing.
    for (form, field) in [
        (
            vec![("every", "soon"), ("task", r#"{"data": {}}"#)],
            "every",
        ),
        (
            vec![
                ("every", "60"),
                ("cron", "* * * * *"),
                ("task", r#"{"data": {}}"#),
            ],
            "cron",
        ),
        (
            vec![("cron", "not cron"), ("task", r#"{"data": {}}"#)],
            "cron",
        ),
        (vec![("at", "someday"), ("task", r#"{"data": {}}"#)], "at"),
        (vec![("every", "60"), ("task", "[1]")], "task"),
        (
            vec![("every", "60"), ("task", r#"{"data": {}, "runAt": 5}"#)],
            "task",
        ),
        (vec![("every", "60")], "task"),
    ] {
        site.post("/admin/schedules/often/edit", &form)
            .await
            .error(400, field);
    }
    site.post("/admin/schedules/nope/pause", &[])
        .await
        .error(404, "nope");
    assert_eq!(app.status("schedules").await["schedules"][0], s);
    let audit = audit_actions(&mut site).await;
    assert_eq!(
        audit[..3],
        [
            "open edit_schedule",
            "open resume_schedule",
            "open pause_schedule"
        ]
    );
    let audit = site.get("/admin/audit").await.html().to_owned();
    assert!(
        audit.contains(r#"<a href="/admin/schedules"><code>often</code></a>"#),
        "{audit}"
    );
}

#[tokio::test]
async fn a_queue_page_edits_its_limits_and_shows_what_waits_and_who_takes_it() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    // The oldest ready copy is not the next claimed: a low priority one
    // published first waits behind newer high priority ones.
    app.publish(json!({"data": {"n": 1}, "priority": "low"}))
        .await
        .ok();
    app.advance(120.0).await;
    app.publish(json!({"data": {"n": 2}, "priority": "high"}))
        .await
        .ok();
    app.publish(json!({"data": {"n": 3}})).await.ok();
    let w = app
        .send(
            Method::PUT,
            "/worker",
            Some(json!({"queues": ["q"], "name": "mailer-1"})),
        )
        .await
        .ok()["workerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut site = Site::new(&app);
    let page = site.get("/admin/queues/q").await.html().to_owned();
    for text in [
        "<dd>waiting 2m</dd>",
        "nothing claimed here yet",
        &format!(r#"<a href="/admin/workers#worker-{w}">mailer-1</a> <span class="state IDLE">"#),
    ] {
        assert!(page.contains(text), "{text} in {page}");
    }
    app.claim(&w).await;
    app.advance(30.0).await;
    app.claim(&w).await;
    let page = site.get("/admin/queues/q").await.html().to_owned();
    assert!(
        page.contains("median 30.0 s, 95th percentile 30.0 s, longest 30.0 s, over the last 2 claims on this node"),
        "{page}"
    );
    assert!(
        page.contains("<dd>waiting 2m</dd>"),
        "the low one still waits: {page}"
    );
    let running = site
        .get("/admin/queues/q?state=running")
        .await
        .html()
        .to_owned();
    assert!(
        running.contains(&format!(
            r#"<td><a href="/admin/workers#worker-{w}">mailer-1</a></td>"#
        )) && running.contains("<th scope=\"col\">Started</th>"),
        "the running tab names the worker: {running}"
    );
    let workers = site.get("/admin/workers").await.html().to_owned();
    assert!(workers.contains(&format!(r#"<tr id="worker-{w}">"#)));

    // Limits: saved from the form, shown back, cleared by emptying them.
    let fields = |max: &'static str, rate: &'static str, search: &'static str| {
        vec![
            ("maxRunning", max),
            ("rateLimit", rate),
            ("groupMaxRunning", ""),
            ("groupRateLimit", ""),
            ("searchFields", search),
        ]
    };
    let limits = |max, rate| fields(max, rate, "");
    let to = site
        .post(
            "/admin/queues/q/limits",
            &fields("2", "2.5", "email, order.id"),
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Saved the limits of q"), "{to}");
    let settings = app.status("queue=q").await["settings"].clone();
    assert_eq!(
        settings,
        json!({"maxRunning": 2, "rateLimit": 2.5, "paused": false,
            "searchFields": ["email", "order.id"]})
    );
    let page = site.get("/admin/queues/q").await.html().to_owned();
    assert!(
        page.contains(r#"name="maxRunning" value="2""#)
            && page.contains(r#"name="rateLimit" value="2.5""#)
            && page.contains(r#"name="searchFields" value="email, order.id""#)
    );
    for (form, field) in [
        (limits("many", ""), "maxRunning"),
        (limits("0", ""), "maxRunning"),
        (limits("2", "-1"), "rateLimit"),
        (limits("1.5", ""), "maxRunning"),
        (fields("2", "", "a..b"), "searchFields"),
        (fields("2", "", "a, a"), "searchFields"),
    ] {
        site.post("/admin/queues/q/limits", &form)
            .await
            .error(400, field);
    }
    assert_eq!(
        app.status("queue=q").await["settings"],
        settings,
        "refused forms change nothing"
    );
    site.post("/admin/queues/q/limits", &limits("", ""))
        .await
        .redirect();
    assert!(
        app.status("queue=q").await.get("settings").is_none(),
        "cleared"
    );
    let audit = site.get("/admin/audit").await.html().to_owned();
    assert!(
        audit.contains(
            r#"<td>queue_settings</td><td><a href="/admin/queues/q"><code>q</code></a></td>"#
        ),
        "an entry links its target: {audit}"
    );
}

async fn next_piece(res: &mut reqwest::Response) -> String {
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), res.chunk())
        .await
        .expect("a piece within 10 s")
        .expect("the stream reads")
        .expect("the stream goes on");
    String::from_utf8(chunk.to_vec()).unwrap()
}

#[tokio::test]
async fn the_live_stream_says_when_the_lists_change() {
    let app = spawn_app().await;
    app.put_interest("q", json!("*")).await.ok();
    let mut res = reqwest::get(format!("{}/admin/live", app.base))
        .await
        .expect("the stream answers");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert!(
        next_piece(&mut res).await.contains(": live"),
        "connected at once"
    );
    app.publish_data(json!({"n": 1})).await;
    assert_eq!(next_piece(&mut res).await, "event: change\ndata: {}\n\n");
    let w = app.register(&["q"]).await;
    app.claim(&w).await;
    assert_eq!(
        next_piece(&mut res).await,
        "event: change\ndata: {}\n\n",
        "a claim changes the lists too"
    );
}

#[tokio::test]
async fn interests_are_edited_as_fields_and_patterns_and_a_bad_one_is_shown_in_its_row() {
    let app = spawn_app().await;
    let mut site = Site::new(&app);
    let page = site.get("/admin/interests").await.html().to_owned();
    assert_eq!(
        page.matches(r#"<input name="field""#).count(),
        3,
        "blank rows"
    );
    let rows = |rows: &[(&'static str, &'static str, &'static str)]| {
        let mut form = vec![("queue", "logs"), ("mode", "fields"), ("takes", "fields")];
        for (field, op, value) in rows {
            form.extend([("field", *field), ("op", *op), ("value", *value)]);
        }
        form.extend([("field", ""), ("op", "regex"), ("value", "")]);
        form
    };
    // A regex as written, backslashes and all; operators beside it.
    let to = site
        .post(
            "/admin/interests",
            &rows(&[
                ("path", "regex", r"^C:\\temp\\.+\.log$"),
                ("size", "numeric", ">= 10 < 20"),
                ("host", "suffix", ".example.com"),
            ]),
        )
        .await
        .redirect();
    assert!(to.ends_with("done=Saved the interests of logs"), "{to}");
    let saved = app.status("interests").await["interests"]["logs"].clone();
    assert_eq!(
        saved,
        json!({"path": r"^C:\\temp\\.+\.log$", "size": {"numeric": [">=", 10.0, "<", 20.0]}, "host": {"suffix": ".example.com"}})
    );
    let routed = app
        .send(
            Method::POST,
            "/interest/try",
            Some(json!({"data": {"path": r"C:\temp\a.log"}})),
        )
        .await
        .ok();
    assert_eq!(routed["queues"][0]["queue"], "logs", "{routed}");
    let edit = site
        .get("/admin/interests?edit=logs")
        .await
        .html()
        .to_owned();
    assert!(
        edit.contains(r#"value="^C:\\temp\\.+\.log$""#),
        "shown as written: {edit}"
    );
    assert!(edit.contains(r#"<option value="numeric" selected>"#));

    // A bad regex: the form comes back with the input kept and the reason
    // next to its row; nothing is saved.
    let refused = site
        .post(
            "/admin/interests",
            &rows(&[
                ("path", "regex", r"^C:\\temp\\.+\.log$"),
                ("size", "regex", "([0-9]+"),
            ]),
        )
        .await;
    assert_eq!(refused.status.as_u16(), 400);
    let html = refused.body;
    assert!(
        html.contains(r#"<input name="value" value="([0-9]+""#)
            && html.contains(r#"<tr class="refused">"#)
            && html.contains(r#"id="row-error-2" role="alert">queue `logs`: field `size`: invalid regular expression"#),
        "{html}"
    );
    assert_eq!(app.status("interests").await["interests"]["logs"], saved);
    for (bad, row) in [
        (rows(&[("size", "numeric", ">= ten")]), 1),
        (rows(&[("a", "regex", "x"), ("a", "regex", "y")]), 2),
        (rows(&[("", "regex", "x")]), 1),
    ] {
        let page = site.post("/admin/interests", &bad).await;
        assert_eq!(page.status.as_u16(), 400);
        assert!(
            page.body.contains(&format!(r#"id="row-error-{row}""#)),
            "{}",
            page.body
        );
    }
    let empty = site.post("/admin/interests", &rows(&[])).await;
    assert!(empty.status.as_u16() == 400 && empty.body.contains("give at least one field"));
    // Every task, and what no other queue takes, need no rows.
    for (takes, want) in [("every", json!("*")), ("unrouted", json!("unrouted"))] {
        site.post(
            "/admin/interests",
            &[
                ("queue", "all"),
                ("mode", "fields"),
                ("takes", takes),
                ("field", ""),
                ("op", "regex"),
                ("value", ""),
            ],
        )
        .await
        .redirect();
        assert_eq!(app.status("interests").await["interests"]["all"], want);
    }
    // What rows cannot say is edited as JSON.
    app.put_interest("rules", json!([{"a": "x", "b": "y"}, {"c": "z"}]))
        .await
        .ok();
    let edit = site
        .get("/admin/interests?edit=rules")
        .await
        .html()
        .to_owned();
    assert!(
        edit.contains(r#"<textarea id="interests" name="interests""#)
            && !edit.contains(r#"name="mode""#)
    );
}

#[tokio::test]
async fn a_finished_tab_leads_to_the_archive_which_pages_newest_first() {
    let app = spawn_app_with(|s| s.tasks.history = 5).await;
    app.put_interest("old", json!("*")).await.ok();
    let worker = app.register(&["old"]).await;
    for n in 0..60 {
        app.publish_data(json!({"n": n})).await;
        let task = app.claim(&worker).await;
        app.update(&worker, &task, "complete", json!({})).await.ok();
    }
    let mut site = Site::new(&app);
    let recent = site
        .get("/admin/queues/old?state=completed")
        .await
        .html()
        .to_owned();
    assert_eq!(rows(&recent), 5);
    assert!(recent.contains("Older copies, in the archive"), "{recent}");
    let first = site
        .get("/admin/queues/old?state=completed&archived=1")
        .await
        .html()
        .to_owned();
    // 55 archived, 50 a page, the newest (54) first.
    assert_eq!(rows(&first), 50);
    assert!(first.contains("{&#34;n&#34;:54}") && !first.contains("{&#34;n&#34;:4}"));
    // The first link whose address holds `part`, unescaped.
    let link = |html: &str, part: &str| {
        html.split("href=\"")
            .filter_map(|s| s.split('"').next())
            .find(|h| h.contains(part))
            .unwrap_or_else(|| panic!("a link with {part}"))
            .replace("&#38;", "&")
    };
    let next = link(&first, "before=");
    let second = site.get(&next).await.html().to_owned();
    assert_eq!(rows(&second), 5);
    assert!(second.contains("{&#34;n&#34;:0}") && !second.contains("rel=\"next\""));
    // Back from the second page: the first again, which has no page before.
    let prev = link(&second, "after=");
    let again = site.get(&prev).await.html().to_owned();
    assert_eq!(rows(&again), 50);
    assert!(again.contains("{&#34;n&#34;:54}") && again.contains("{&#34;n&#34;:5}"));
    assert!(!again.contains("rel=\"prev\"") && again.contains("rel=\"next\""));
    site.get("/admin/queues/old?state=completed&archived=1&before=nope")
        .await
        .error(400, "before");
    // A cursor no longer in the archive leads to its newest page.
    let gone =
        "/admin/queues/old?state=completed&archived=1&before=01a24d5a-2e84-7572-9d04-078b70120000";
    let to = site.get(gone).await.redirect();
    assert_eq!(
        to,
        "/admin/queues/old?state=completed&archived=1&done=The copies of that page have left the archive; this is its newest page"
    );

    // The archive's bar removes ticked rows, or every archived match.
    assert!(
        first.contains("every task in the archive")
            && first.contains(r#"<input type="hidden" name="archived" value="1">"#)
            && first.contains(r#"value="remove""#),
        "{first}"
    );
    let back = "/admin/queues/old?state=completed&archived=1";
    let matching = [
        ("action", "remove"),
        ("scope", "matching"),
        ("state", "completed"),
        ("queue", "old"),
        ("archived", "1"),
        ("data", "n=3*"),
        ("back", back),
    ];
    let to = site.post("/admin/bulk", &matching).await.redirect();
    assert!(
        to.ends_with("done=Removed 11 task(s)"),
        "n = 3 and 30-39: {to}"
    );
    let newest = first
        .split("name=\"id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a ticked row's id")
        .to_owned();
    let ticked = [("action", "remove"), ("id", &newest), ("back", back)];
    let to = site.post("/admin/bulk", &ticked).await.redirect();
    assert!(to.ends_with("done=Removed 1 task(s)"), "{to}");
    let left = site.get(back).await.html().to_owned();
    assert_eq!(rows(&left), 43);
    assert!(!left.contains(&newest) && !left.contains("{&#34;n&#34;:31}"));
    // And one from its own page.
    let one = left
        .split("name=\"id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a row's id")
        .to_owned();
    let own = format!("/admin/tasks/{one}");
    let page = site.get(&own).await.html().to_owned();
    assert!(page.contains("Remove") && page.contains(r#"<span class="badge">archived</span>"#));
    let to = site
        .post(&format!("{own}/remove"), &[("back", back)])
        .await
        .redirect();
    assert!(to.ends_with(&format!("done=Removed task {one}")), "{to}");
    assert_eq!(rows(site.get(back).await.html()), 42);
    let no_queue = [
        ("action", "remove"),
        ("scope", "matching"),
        ("state", "completed"),
        ("archived", "1"),
    ];
    site.post("/admin/bulk", &no_queue)
        .await
        .error(400, "queue");
}
