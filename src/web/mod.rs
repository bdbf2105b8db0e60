//! The management site: server-rendered pages under `/admin`, from the
//! templates in `web/templates` (compiled in by askama) with one stylesheet
//! and one small script from `web/static`. No front-end build.
//!
//! Every page is admin-only (the access guard treats paths outside the API's
//! route table as admin). Forms that change state POST with a CSRF token
//! (`csrf`), checked against a same-site cookie; see [`csrf`].

mod batches;
mod bulk;
pub mod csrf;
mod interest_form;
mod interests;
mod live;
mod pages;
mod schedules;
mod search;
mod view;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Mounts the site.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async {
            HttpResponse::Found()
                .insert_header((header::LOCATION, "/admin"))
                .finish()
        }),
    )
    .service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(csrf::protect))
            .route("", web::get().to(pages::overview))
            .route("/", web::get().to(pages::overview))
            .route("/overview.json", web::get().to(pages::overview_json))
            .route("/live", web::get().to(live::live))
            .route("/static/{file}", web::get().to(pages::asset))
            .route("/queues", web::get().to(pages::queues))
            .route("/queues/{queue}", web::get().to(pages::queue))
            .route(
                "/queues/{queue}/{action}",
                web::post().to(pages::queue_action),
            )
            .route("/bulk", web::post().to(bulk::act))
            .route("/tasks/{id}", web::get().to(pages::task))
            .route("/batches/{id}", web::get().to(batches::batch))
            .route("/tasks/{id}/{action}", web::post().to(pages::task_action))
            .route("/workers", web::get().to(pages::workers))
            .route("/workers/{id}/remove", web::post().to(pages::remove_worker))
            .route("/failed", web::get().to(pages::failed))
            .route("/failed/retry-all", web::post().to(pages::retry_all))
            .route("/failed/remove-all", web::post().to(pages::remove_all))
            .route("/scheduled", web::get().to(pages::scheduled))
            .route("/schedules", web::get().to(schedules::schedules))
            .route(
                "/schedules/{name}/{action}",
                web::post().to(schedules::schedule_action),
            )
            .route("/interests", web::get().to(interests::interests))
            .route("/interests", web::post().to(interests::save_interests))
            .route("/interests/try", web::post().to(interests::try_task))
            .route(
                "/interests/{queue}/remove",
                web::post().to(interests::remove_interests),
            )
            .route("/locks", web::get().to(pages::locks))
            .route("/locks/break", web::post().to(pages::break_lock))
            .route("/audit", web::get().to(pages::audit))
            .default_service(web::to(pages::not_found)),
    );
}
