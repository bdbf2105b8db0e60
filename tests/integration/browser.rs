//! The management site in a real headless Chromium, driven over WebDriver
//! (chromedriver): what an operator does, click by click. Screenshots of
//! every page land in `target/screenshots/` for a reviewer.
//!
//! Chromium and chromedriver come from Debian (`scripts/test.sh` installs
//! them). Without them these tests fail, saying so; they never skip.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

fn which(name: &str, fallback: &str) -> PathBuf {
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    let fallback = PathBuf::from(fallback);
    assert!(
        fallback.is_file(),
        "{name} is not installed: run scripts/test.sh, which installs Debian's chromium and chromium-driver"
    );
    fallback
}

/// A chromedriver with one headless Chromium session.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Chromium is chromedriver's child: killing chromedriver alone left its
    /// browsers running after the suite, so the whole process group goes.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    async fn start() -> Self {
        let driver_path = which("chromedriver", "/usr/bin/chromedriver");
        let chromium = which("chromium", "/usr/bin/chromium");
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Self {
            driver,
            client,
            _profile: profile,
        }
    }

    async fn goto(&self, app: &TestApp, path: &str) {
        self.client
            .goto(&format!("{}{path}", app.base))
            .await
            .expect("navigate");
    }

    /// Waits for `css` (a page may still be loading after a click).
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("no {css} ({e}) in:\n{page}");
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("its text")
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("run a script")
    }

    /// Waits until `css`'s text is `want`, without reloading the page.
    async fn wait_for_text(&self, css: &str, want: &str) {
        let started = Instant::now();
        loop {
            let got = self.text(css).await;
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{css} stayed `{got}`, wanted `{want}`"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `css`'s attribute `name` is `want`.
    async fn wait_for_attribute(&self, css: &str, name: &str, want: &str) {
        let script = format!("return document.querySelector('{css}').getAttribute('{name}');");
        self.wait_for_script(&script, json!(want)).await;
    }

    /// Waits until `script` returns `want`.
    async fn wait_for_script(&self, script: &str, want: Value) {
        let started = Instant::now();
        loop {
            let got = self.js(script).await;
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "`{script}` stayed {got}, wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Checks what every page must be: labelled fields, named buttons, one
    /// h1, no script errors shown, nothing wider than the window.
    async fn check_page(&self, what: &str) {
        let report = self
            .js(
                "const fields = [...document.querySelectorAll('input:not([type=hidden]), textarea')];\
                 const unlabelled = fields.filter(f => f.labels.length === 0).map(f => f.name);\
                 const unnamed = [...document.querySelectorAll('button')]\
                   .filter(b => !(b.getAttribute('aria-label') || b.textContent.trim())).length;\
                 return {unlabelled, unnamed, h1: document.querySelectorAll('h1').length,\
                   error: document.querySelector('[role=alert]') !== null,\
                   overflow: document.documentElement.scrollWidth > window.innerWidth + 1,\
                   wide: [...document.querySelectorAll('body *')]\
                     .filter(e => !e.parentElement.closest('.scroll, pre'))\
                     .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)\
                     .map(e => e.tagName + '.' + e.className).slice(0, 5)};",
            )
            .await;
        assert_eq!(
            report["unlabelled"],
            json!([]),
            "{what}: fields without labels"
        );
        assert_eq!(report["unnamed"], 0, "{what}: buttons without names");
        assert_eq!(report["h1"], 1, "{what}: one heading");
        assert_eq!(report["error"], false, "{what}: an error page");
        assert_eq!(
            report["overflow"], false,
            "{what}: wider than the window: {}",
            report["wide"]
        );
    }
}

async fn fail_one(app: &TestApp, queue: &str, data: Value) -> String {
    app.publish(json!({"data": data, "maxAttempts": 1}))
        .await
        .ok();
    let worker = app.register(&[queue]).await;
    let task = app.claim(&worker).await;
    app.update(
        &worker,
        &task,
        "fail",
        json!({"failReason": "smtp refused"}),
    )
    .await
    .ok();
    task["taskId"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn an_operator_watches_retries_and_routes_in_a_real_browser() {
    let app = spawn_app().await;
    app.put_interest("email", json!({"kind": "^email$"}))
        .await
        .ok();
    app.put_interest("audit", json!("*")).await.ok();
    let failed = fail_one(
        &app,
        "email",
        json!({"kind": "email", "to": "bounce@example.com"}),
    )
    .await;
    for i in 0..3 {
        app.publish_data(json!({"kind": "email", "to": format!("user{i}@example.com")}))
            .await;
    }
    // Some minutes of work, for the throughput chart (the test's clock moves
    // only when told).
    let busy = app.register(&["audit"]).await;
    for round in 0..8u64 {
        for _ in 0..(round % 4) * 3 {
            app.publish_data(json!({"kind": "metric"})).await;
        }
        if round % 3 > 0 {
            for task in app.claim_n(&busy, (round % 3 * 2) as u32).await {
                app.update(&busy, &task, "complete", json!({})).await.ok();
            }
        }
        app.advance(30.0).await;
    }
    app.publish(json!({"data": {"kind": "report"}, "runAt": 4_000_000_000u64}))
        .await
        .ok();
    let b = Browser::start().await;

    // The overview shows what was published, and follows new publishes
    // without a reload.
    b.goto(&app, "/admin").await;
    assert_eq!(b.text("[data-total=published]").await, "41");
    b.check_page("overview").await;
    b.screenshot("overview").await;
    b.js("window.notReloaded = true; return null;").await;
    app.publish_data(json!({"kind": "email", "to": "late@example.com"}))
        .await;
    b.wait_for_text("[data-total=published]", "42").await;
    b.wait_for_text("[data-live-queues] tr:nth-child(2) td:nth-child(2)", "4")
        .await;
    assert_eq!(b.js("return window.notReloaded === true;").await, true);

    // The theme toggle: dark on a click, kept across pages, light again.
    let background = "return getComputedStyle(document.body).backgroundColor;";
    assert_eq!(b.js(background).await, "rgb(255, 255, 255)");
    b.click("header button.theme").await;
    assert_eq!(
        b.js("return document.documentElement.dataset.theme;").await,
        "dark"
    );
    assert_eq!(b.js(background).await, "rgb(17, 22, 28)");
    b.check_page("overview, dark").await;
    b.screenshot("overview-dark").await;
    b.goto(&app, "/admin/queues").await;
    assert_eq!(
        b.js(background).await,
        "rgb(17, 22, 28)",
        "the choice is kept"
    );
    assert_eq!(b.text("header button.theme").await, "Light");
    b.click("header button.theme").await;
    assert_eq!(b.js(background).await, "rgb(255, 255, 255)");

    // The failed task is retried from the failed page.
    b.goto(&app, "/admin/failed").await;
    assert!(b.text("tbody").await.contains("smtp refused"));
    b.check_page("failed").await;
    b.screenshot("failed").await;
    b.click(&format!("button[aria-label='Retry task {failed}']"))
        .await;
    assert_eq!(
        b.text(".flash").await,
        format!("Task {failed} will run again")
    );
    assert!(b.text("main").await.contains("No failed tasks"));
    let task = app.status(&format!("task={failed}")).await;
    assert_eq!(task["task"]["state"], "ready");

    // A destructive action asks first; dismissing it changes nothing.
    let queue_page = "/admin/queues/email";
    b.goto(&app, queue_page).await;
    b.check_page("queue").await;
    b.screenshot("queue").await;

    // A search typed in the form lands in the address, so a link shares it.
    b.fill("form.search input[name=data]", "to=late*").await;
    b.click("form.search button").await;
    b.wait_for_text("form.search a", "Clear the search").await;
    let url = b.client.current_url().await.expect("an address");
    assert!(url.as_str().contains("data=to%3Dlate*"), "{url}");
    assert_eq!(
        b.js("return document.querySelectorAll('tbody tr').length;")
            .await,
        1
    );
    assert!(b.text("tbody").await.contains("late@example.com"));
    b.check_page("queue, searched").await;
    b.screenshot("queue-search").await;
    b.goto(&app, queue_page).await;
    let first_row = "tbody tr:last-child button.danger";
    b.click(first_row).await;
    b.client.dismiss_alert().await.expect("a confirmation");
    assert_eq!(app.queue("email").await["ready"], 5);
    b.click(first_row).await;
    b.client.accept_alert().await.expect("a confirmation");
    b.client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(".flash"))
        .await
        .expect("the outcome");
    assert_eq!(app.queue("email").await["ready"], 4);

    // An interest is edited, then a task is tried against it.
    b.goto(&app, "/admin/interests").await;
    b.click("a[aria-label='Edit the interests of email']").await;
    assert_eq!(
        b.client
            .find(Locator::Id("queue"))
            .await
            .expect("the queue field")
            .prop("value")
            .await
            .expect("its value")
            .as_deref(),
        Some("email")
    );
    // The interest is a row: the field, and its regex as written.
    assert_eq!(
        b.js("return document.querySelector('input[name=field]').value;")
            .await,
        "kind"
    );
    b.fill("input[name=value]", "^(email|mail)$").await;
    b.click("button[name=save]").await;
    assert_eq!(b.text(".flash").await, "Saved the interests of email");
    b.fill("#task", r#"{"kind": "mail", "to": "x@example.com"}"#)
        .await;
    b.click("#try-h ~ button").await;
    let result = b.text("#try-result").await;
    assert!(result.contains("It would reach 2 queue(s)"), "{result}");
    assert!(
        result.contains("kind = mail matched ^(email|mail)$"),
        "{result}"
    );
    b.check_page("interests").await;
    b.screenshot("interests-try").await;
    // A candidate interest, tried against the recent publishes unsaved.
    b.fill("#queue", "reports").await;
    b.fill("input[name=field]", "kind").await;
    b.fill("input[name=value]", "^report$").await;
    b.click("button[name=preview]").await;
    let preview = b.text("#preview-result").await;
    assert!(
        preview.contains(
            "Of the last 42 task(s) published to this node, these interests would have taken 1."
        ),
        "{preview}"
    );
    b.screenshot("interests-preview").await;

    // A running task's page follows its log as the worker sends it, then
    // says how the task ended.
    let tailer = app.register(&["audit"]).await;
    app.publish(json!({"data": {"kind": "build"}})).await.ok();
    let running = app.claim(&tailer).await;
    assert_eq!(running["state"], "running", "{running}");
    let append = |text: &'static str| {
        app.send(
            reqwest::Method::POST,
            "/task/log",
            Some(json!({"workerId": tailer, "taskId": running["taskId"], "text": text})),
        )
    };
    append("compiling\n").await.ok();
    let running_page = format!("/admin/tasks/{}", running["taskId"].as_str().unwrap());
    b.goto(&app, &running_page).await;
    assert_eq!(b.text("#task-log").await, "compiling");
    assert!(b.text("[data-log-status]").await.starts_with("Following"));
    // Past the server's least time between two appends (its clock is the
    // tests' to move).
    app.advance(1.0).await;
    append("linking\n").await.ok();
    b.wait_for_text("#task-log", "compiling\nlinking").await;
    b.screenshot("task-log").await;
    b.check_page("task-log").await;
    app.update(&tailer, &running, "complete", json!({}))
        .await
        .ok();
    b.wait_for_text(
        "[data-log-status]",
        "The task ended completed. Reload the page for its record.",
    )
    .await;

    // Every other page, for the record.
    let task_page = format!("/admin/tasks/{failed}");
    for (path, name) in [
        ("/admin/queues", "queues"),
        (task_page.as_str(), "task"),
        ("/admin/workers", "workers"),
        ("/admin/scheduled", "scheduled"),
        ("/admin/schedules", "schedules"),
        ("/admin/locks", "locks"),
        ("/admin/audit", "audit"),
    ] {
        b.goto(&app, path).await;
        b.screenshot(name).await;
        b.check_page(name).await;
    }
    let audit = b.text("tbody").await;
    for action in ["retry", "remove", "set_interests"] {
        assert!(audit.contains(action), "{action} in the audit log: {audit}");
    }

    // A queue with fairness groups shows them, and a held copy says why.
    app.put_interest("tenants", json!({"tenant": "^(?P<group>[a-z]+)$"}))
        .await
        .ok();
    app.send(
        reqwest::Method::PUT,
        "/queue",
        Some(json!({"queue": "tenants", "groupMaxRunning": 1})),
    )
    .await
    .ok();
    let mut held = String::new();
    for (tenant, n) in [("acme", 3), ("globex", 1)] {
        for i in 0..n {
            let p = app.publish_data(json!({"tenant": tenant, "i": i})).await;
            let copy = p["copies"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["queue"] == "tenants")
                .unwrap()["taskId"]
                .as_str()
                .unwrap()
                .to_owned();
            if tenant == "acme" && i == 1 {
                held = copy;
            }
        }
    }
    let w = app.register(&["tenants"]).await;
    assert_eq!(app.claim_n(&w, 10).await.len(), 2, "one per group");
    b.goto(&app, "/admin/queues/tenants").await;
    let first = b.text("#groups tbody tr:first-child").await;
    assert_eq!(
        first, "acme 2 1 running limit",
        "the most ready first, held"
    );
    assert!(b.text("main").await.contains("at most 1 running per group"));
    b.check_page("queue with groups").await;
    b.screenshot("queue-groups").await;
    b.goto(&app, &format!("/admin/tasks/{held}")).await;
    let page = b.text("main").await;
    assert!(
        page.contains("its group acme has 1 running, the most its queue allows the group (1)"),
        "{page}"
    );

    // A workflow: an order's batch, its charge's output gone on to
    // shipping, and a task that waits for the shipment.
    app.put_interest("charge", json!({"order": "^o-"}))
        .await
        .ok();
    app.put_interest("ship", json!({"charged": "^yes$"}))
        .await
        .ok();
    app.send(
        reqwest::Method::PUT,
        "/batch",
        Some(
            json!({"batch": "order-7", "tasks": [{"data": {"order": "o-7"}, "publishOutput": true}],
                    "onComplete": {"data": {"summary": "order-7"}}}),
        ),
    )
    .await
    .ok();
    let w = app.register(&["charge"]).await;
    let charge = app.claim(&w).await;
    app.update(
        &w,
        &charge,
        "complete",
        json!({"output": {"charged": "yes"}}),
    )
    .await
    .ok();
    let ship = app
        .status(&format!("task={}", charge["taskId"].as_str().unwrap()))
        .await["task"]["children"][0]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = app
        .publish(json!({"data": {"note": "after shipping"}, "dependsOn": [ship]}))
        .await
        .ok();
    let after = after["copies"][0]["taskId"].as_str().unwrap().to_owned();
    b.goto(&app, &format!("/admin/tasks/{ship}")).await;
    let page = b.text("main").await;
    assert!(page.contains("Made from the output of"), "{page}");
    assert!(page.contains("In batch order-7"), "{page}");
    assert!(page.contains("Wait for it (1)"), "{page}");
    b.check_page("task in a workflow").await;
    b.screenshot("task-workflow").await;
    b.click("a[href='/admin/batches/order-7']").await;
    // The `audit` queue takes every task: the order's copy there, and the
    // output's two (shipping and audit) wait.
    b.wait_for_text("td[data-state=ready]", "3").await;
    assert_eq!(b.text("td[data-state=completed]").await, "1");
    b.check_page("batch").await;
    b.screenshot("batch").await;
    b.goto(&app, &format!("/admin/tasks/{after}")).await;
    let page = b.text("main").await;
    assert!(
        page.contains("Waits for (1; cancelled if one fails)"),
        "{page}"
    );
    assert!(
        page.contains("it waits for 1 of its 1 dependencies"),
        "{page}"
    );

    // A phone's width.
    b.client.set_window_size(390, 844).await.expect("resize");
    for (path, name) in [
        ("/admin", "phone-overview"),
        (task_page.as_str(), "phone-task"),
    ] {
        b.goto(&app, path).await;
        b.screenshot(name).await;
        b.check_page(name).await;
    }
    b.client.clone().close().await.expect("close the session");
}

#[tokio::test]
async fn an_operator_selects_rows_and_acts_on_them_in_a_real_browser() {
    let app = spawn_app().await;
    app.put_interest("email", json!({"kind": "^email$"}))
        .await
        .ok();
    let mut failed = Vec::new();
    for i in 0..4 {
        failed.push(fail_one(&app, "email", json!({"kind": "email", "n": i})).await);
    }
    let b = Browser::start().await;
    b.goto(&app, "/admin/failed").await;
    b.check_page("failed, selection").await;
    assert_eq!(
        b.js("return document.querySelector('form.bulk button[value=retry]').disabled;")
            .await,
        true,
        "nothing selected, nothing to act on"
    );
    // A click on the first row's box, a shift-click on the third's: the
    // rows between are ticked too.
    let boxes = "input[type=checkbox][form=bulk]";
    b.js(&format!(
        "const boxes = document.querySelectorAll('{boxes}');\
         boxes[0].click();\
         boxes[2].dispatchEvent(new MouseEvent('click', {{bubbles: true, cancelable: true, shiftKey: true}}));\
         return null;"
    ))
    .await;
    b.wait_for_text("[data-bulk-count]", "3 selected").await;
    let ticked = b
        .js(&format!(
            "return [...document.querySelectorAll('{boxes}')].filter(b => b.checked).map(b => b.value);"
        ))
        .await;
    b.screenshot("failed-selected").await;
    b.click("form.bulk button[value=retry]").await;
    b.client.accept_alert().await.expect("a confirmation");
    assert_eq!(b.text(".flash").await, "3 task(s) will run again");
    for id in ticked.as_array().expect("the ticked ids") {
        let t = app.status(&format!("task={}", id.as_str().unwrap())).await;
        assert_eq!(t["task"]["state"], "ready", "{id}");
    }
    assert_eq!(app.queue("email").await["failed"], 1);

    // Every task of the list, whatever is ticked: asked first, dismissed,
    // nothing changes; accepted, the last one goes.
    b.click("[data-bulk-all]").await;
    b.wait_for_text("[data-bulk-count]", "Every task in the list")
        .await;
    b.click("form.bulk button[value=remove]").await;
    b.client.dismiss_alert().await.expect("a confirmation");
    assert_eq!(app.queue("email").await["failed"], 1);
    b.click("form.bulk button[value=remove]").await;
    b.client.accept_alert().await.expect("a confirmation");
    assert_eq!(b.text(".flash").await, "Removed 1 task(s)");
    assert_eq!(app.queue("email").await["failed"], 0);
    assert_eq!(app.queue("email").await["ready"], 3);

    // On a queue's ready list, the ticked rows move to another queue.
    b.goto(&app, "/admin/queues/email?state=ready").await;
    b.click("[data-select-page]").await;
    b.wait_for_text("[data-bulk-count]", "3 selected").await;
    b.fill("form.bulk input[name=to]", "email.retry").await;
    b.click("form.bulk button[value=move]").await;
    b.client.accept_alert().await.expect("a confirmation");
    assert_eq!(b.text(".flash").await, "Moved 3 task(s) to email.retry");
    assert_eq!(app.queue("email.retry").await["ready"], 3);
    b.check_page("queue, after a move").await;

    // The list follows new tasks without a reload, but not under a
    // selection, nor while the tab is hidden.
    b.goto(&app, "/admin/queues/email?state=ready").await;
    b.wait_for_attribute("body", "data-live", "on").await;
    b.js("window.notReloaded = true; return null;").await;
    let rows = "return document.querySelectorAll('[data-live-part=list] tbody tr').length;";
    app.publish_data(json!({"kind": "email", "n": 10})).await;
    b.wait_for_script(rows, json!(1)).await;
    b.click("input[type=checkbox][form=bulk]").await;
    app.publish_data(json!({"kind": "email", "n": 11})).await;
    b.wait_for_attribute("body", "data-live", "held").await;
    assert_eq!(b.js(rows).await, 1, "a ticked row stays where it is");
    b.click("input[type=checkbox][form=bulk]").await;
    b.wait_for_script(rows, json!(2)).await;
    b.js(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});\
          document.dispatchEvent(new Event('visibilitychange')); return null;",
    )
    .await;
    b.wait_for_attribute("body", "data-live", "paused").await;
    app.publish_data(json!({"kind": "email", "n": 12})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.js(rows).await, 2, "nothing comes while the tab is hidden");
    b.js(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});\
          document.dispatchEvent(new Event('visibilitychange')); return null;",
    )
    .await;
    b.wait_for_script(rows, json!(3)).await;
    assert_eq!(b.js("return window.notReloaded === true;").await, true);
    b.screenshot("queue-live").await;
}

/// Two nodes over one bucket (in memory): the overview shows the cluster,
/// this node marked, each node's partitions; a store of one node shows no
/// such section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_cluster_on_the_overview_in_a_real_browser() {
    use crate::helpers::{spawn_cluster, until_spread};
    let bucket = interq::store::couchbase::MemoryBucket::new();
    let apps = spawn_cluster(&bucket, 2, 8).await;
    until_spread(&[&apps[0].api, &apps[1].api], &[4, 4]).await;
    let this = apps[0].status("store").await["store"]["cluster"]["node"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = Browser::start().await;
    b.goto(&apps[0], "/admin").await;
    assert_eq!(b.text("#cluster-h").await, "Cluster");
    let rows = b
        .js("return [...document.querySelectorAll('[data-node]')].map(r => [r.dataset.node, r.cells[1].textContent, r.cells[0].textContent.includes('this node')]);")
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        assert_eq!(row[1], "4", "{row}");
        assert_eq!(row[2], row[0] == this.as_str(), "{row}");
    }
    assert!(b
        .text("#cluster-h + p")
        .await
        .starts_with("2 nodes share 8 partitions"));
    b.check_page("overview of a cluster").await;
    b.js("document.querySelector('#cluster-h').scrollIntoView(); return null;")
        .await;
    b.screenshot("overview-cluster").await;
    let single = spawn_app().await;
    b.goto(&single, "/admin").await;
    b.find("#workers-h").await;
    assert_eq!(
        b.js("return document.querySelector('#cluster-h') === null;")
            .await,
        true
    );
}
