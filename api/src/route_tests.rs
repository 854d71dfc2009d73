//! Route tests: every `/v1/torrents` route driven through the full router
//! (auth, rate limits, guards, Problem+JSON rewrite) against a scripted
//! engine on a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode, header};
use revaer_ipc::engine::{EngineRequest, TorrentId};
use serde_json::{Value, json};

use crate::test_harness::Harness;

fn magnet(n: u8) -> String {
    format!("magnet:?xt=urn:btih:{}&dn=item{n}", hex::encode([n; 20]))
}

fn id_of(n: u8) -> String {
    hex::encode([n; 20])
}

fn pointers(body: &Value) -> Vec<String> {
    body["invalid_params"]
        .as_array()
        .unwrap_or_else(|| panic!("no invalid_params in {body}"))
        .iter()
        .map(|p| p["pointer"].as_str().unwrap().to_owned())
        .collect()
}

async fn add_magnet(h: &Harness, n: u8, extra: &Value) -> String {
    let mut body = json!({ "magnet": magnet(n) });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, headers, value) = h.admin(Method::POST, "/v1/torrents", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let id = value["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], format!("/v1/torrents/{id}"));
    id
}

#[tokio::test]
async fn add_magnet_list_and_detail() {
    let h = Harness::start().await;
    let id = add_magnet(
        &h,
        1,
        &json!({"tags": ["tv", "tv", "hd"], "category": "shows", "paused": true}),
    )
    .await;
    assert_eq!(id, id_of(1));

    // Visible at once, labels stored, duplicates refused.
    let (status, _, detail) = h
        .admin(Method::GET, &format!("/v1/torrents/{id}"), &Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["tags"], json!(["tv", "hd"]));
    assert_eq!(detail["category"], "shows");
    assert_eq!(detail["state"], "paused");
    assert_eq!(detail["stale"], false);
    assert_eq!(detail["trackers"][0]["status"], "working");
    assert_eq!(detail["trackers"][0]["next_announce_secs"], 1800);
    assert_eq!(detail["trackers"][0]["seeders"], 1);
    assert_eq!(detail["trackers"][0]["leechers"], 2);
    assert_eq!(detail["trackers"][0]["last_error"], Value::Null);

    // The peers view: what the engine reports, in the public shape.
    let (status, _, peers) = h
        .admin(
            Method::GET,
            &format!("/v1/torrents/{id}/peers"),
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{peers}");
    let peer = &peers["peers"][0];
    assert_eq!(peer["address"], "[2001:db8::7]:51413");
    assert_eq!(peer["client"], "Transmission 3.00");
    assert_eq!(peer["transport"], "tcp");
    assert_eq!(peer["direction"], "outgoing");
    assert_eq!(peer["progress"], 1.0);
    assert_eq!(peer["seed"], true);
    assert_eq!(peer["encrypted"], true);
    let (status, _, _) = h
        .admin(
            Method::GET,
            &format!("/v1/torrents/{}/peers", id_of(9)),
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, problem) = h
        .admin(Method::GET, "/v1/torrents/xyz/peers", &Value::Null)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/path/id"]);

    let (status, _, problem) = h
        .admin(
            Method::POST,
            "/v1/torrents",
            &json!({ "magnet": magnet(1) }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["status"], 409);

    let (status, headers, list) = h.admin(Method::GET, "/v1/torrents", &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::LINK).is_none());
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["next"], Value::Null);

    // Labels survive a restart of the API: they are in SQLite.
    let rows = h.state.store.catalog_all().unwrap();
    assert_eq!(rows[0].tags, vec!["tv".to_owned(), "hd".to_owned()]);

    let (status, _, _) = h
        .admin(
            Method::GET,
            &format!("/v1/torrents/{}", id_of(9)),
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, problem) = h.admin(Method::GET, "/v1/torrents/xyz", &Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/path/id"]);
}

#[tokio::test]
async fn torrent_upload_applies_the_initial_selection_before_starting() {
    let h = Harness::start().await;
    let (status, _, value) = h
        .upload(
            b"d4:infoe-one",
            Some(&json!({"files": [{"glob": "*.nfo", "priority": 0}], "tags": ["x"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let id: TorrentId = value["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(h.engine.priorities(id), vec![4, 4, 0]);
    let requests = h.engine.requests.lock().unwrap().clone();
    let add = requests
        .iter()
        .find_map(|r| match r {
            EngineRequest::Add(add) => Some(add.clone()),
            _ => None,
        })
        .unwrap();
    assert!(add.paused, "added paused until the selection is in place");
    let select_at = requests
        .iter()
        .position(|r| matches!(r, EngineRequest::SelectFiles { .. }))
        .unwrap();
    let resume_at = requests
        .iter()
        .position(|r| matches!(r, EngineRequest::Resume { .. }))
        .unwrap();
    assert!(select_at < resume_at);

    // A rule that matches nothing: refused, and the torrent taken back out.
    let (status, _, problem) = h
        .upload(
            b"d4:infoe-two",
            Some(&json!({"files": [{"glob": "*.iso", "priority": 0}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(pointers(&problem), ["/options/files/0/glob"]);
    h.wait_for("the refused torrent to leave the listing", |h| {
        h.state.torrents.len() == 1
    })
    .await;
    assert_eq!(
        h.engine
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(
                r,
                EngineRequest::Remove {
                    delete_data: true,
                    ..
                }
            ))
            .count(),
        1
    );
}

#[tokio::test]
async fn bad_adds_are_refused_with_pointers() {
    let h = Harness::start().await;
    let cases = [
        (json!({}), vec!["/magnet"]),
        (json!({"magnet": "http://x"}), vec!["/magnet"]),
        (json!({"magnet": magnet(1), "colour": 1}), vec!["/colour"]),
        (
            json!({"magnet": magnet(1), "paused": "yes"}),
            vec!["/paused"],
        ),
        (
            json!({"magnet": magnet(1), "tags": ["ok", "", "a,b"], "save_path": "../up"}),
            vec!["/tags/1", "/tags/2", "/save_path"],
        ),
        (
            json!({"magnet": magnet(1), "files": [{"index": 0, "priority": 1}]}),
            vec!["/files"],
        ),
        (
            json!({"magnet": magnet(1), "category": "x".repeat(65)}),
            vec!["/category"],
        ),
    ];
    for (body, expected) in cases {
        let (status, headers, problem) = h.admin(Method::POST, "/v1/torrents", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {problem}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(pointers(&problem), expected, "{body}");
    }
    // The engine's own refusal is located too.
    let (status, _, problem) = h.upload(b"not bencode", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(pointers(&problem), ["/multipart/torrent"]);
    let (status, _, problem) = h
        .upload(b"d4:infoe", Some(&json!({"magnet": magnet(2)})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/options/magnet"]);
    let (status, _, problem) = h.upload(b"d4:infoe", Some(&json!({"paused": 3}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/options/paused"]);

    let admin = h.admin_key.clone();
    let (status, _, _) = h
        .call(
            Method::POST,
            "/v1/torrents",
            Some(&admin),
            Some("text/plain"),
            "magnet",
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = vec![b'd'; revaer_ipc::engine::MAX_TORRENT_FILE_BYTES + 1];
    let (status, _, problem) = h.upload(&big, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    let huge_json = format!("{{\"magnet\": \"{}\"}}", "a".repeat(70_000));
    let (status, _, _) = h
        .call(
            Method::POST,
            "/v1/torrents",
            Some(&admin),
            Some("application/json"),
            huge_json,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(h.state.torrents.is_empty(), "nothing was added");
}

#[tokio::test]
async fn listing_pages_with_a_keyset_cursor_and_filters() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for n in 1..=7_u8 {
        let tags = if n % 2 == 0 {
            json!(["even", "all"])
        } else {
            json!(["all"])
        };
        ids.push(add_magnet(&h, n, &json!({"tags": tags, "paused": n <= 3})).await);
    }
    // Pages of 3 in (added_at, id) order, following `next` and Link.
    let mut seen: Vec<String> = Vec::new();
    let mut uri = "/v1/torrents?limit=3&tags=all".to_owned();
    for page in 0..3 {
        let (status, headers, list) = h.admin(Method::GET, &uri, &Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let items = list["items"].as_array().unwrap();
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        if let Some(next) = list["next"].as_str() {
            assert!(page < 2);
            let link = headers[header::LINK].to_str().unwrap();
            assert!(
                link.contains(&format!("cursor={next}")) && link.contains("tags=all"),
                "{link}"
            );
            uri = format!("/v1/torrents?limit=3&tags=all&cursor={next}");
        } else {
            assert_eq!(page, 2, "ended early");
            assert!(headers.get(header::LINK).is_none());
        }
    }
    let mut expected = ids.clone();
    expected.sort_by_key(|id| {
        let row = h.state.torrents.catalog(&id.parse().unwrap()).unwrap();
        (row.added_at, id.clone())
    });
    assert_eq!(seen, expected, "every torrent exactly once, in order");

    let count = |uri: &'static str| {
        let h = &h;
        async move {
            let (status, _, list) = h.admin(Method::GET, uri, &Value::Null).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {list}");
            list["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("/v1/torrents?state=paused").await, 3);
    assert_eq!(
        count("/v1/torrents?state=paused,downloading_metadata").await,
        7
    );
    assert_eq!(count("/v1/torrents?tags=even,all").await, 3);
    assert_eq!(count("/v1/torrents?tags=even&tags=odd").await, 0);
    assert_eq!(count("/v1/torrents?name=MAGNET%200303").await, 1);
    assert_eq!(count("/v1/torrents?tracker=example.org").await, 7);
    assert_eq!(count("/v1/torrents?tracker=other.org").await, 0);
    assert_eq!(
        count("/v1/torrents?extension=mkv").await,
        0,
        "magnets have no files yet"
    );

    let (status, _, problem) = h
        .admin(
            Method::GET,
            "/v1/torrents?limit=0&state=bogus&sort=name",
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        pointers(&problem),
        ["/query/limit", "/query/state", "/query/sort"]
    );
}

#[tokio::test]
async fn select_by_index_and_glob_is_checked_against_the_file_list() {
    let h = Harness::start().await;
    let (_, _, value) = h.upload(b"d4:infoe-sel", None).await;
    let id = value["id"].as_str().unwrap().to_owned();
    let tid: TorrentId = id.parse().unwrap();
    let uri = format!("/v1/torrents/{id}/select");
    let (status, _, body) = h
        .admin(
            Method::POST,
            &uri,
            &json!({"rules": [{"glob": "show/*.mkv", "priority": 0}, {"index": 1, "priority": 7}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(h.engine.priorities(tid), vec![0, 7, 4]);

    let (status, _, problem) = h
        .admin(Method::POST, &uri, &json!({"rules": [{"index": 3, "priority": 1}, {"glob": "*.iso", "priority": 1}, {"index": 0, "glob": "x", "priority": 1}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/rules/2"]);
    let (status, _, problem) = h
        .admin(
            Method::POST,
            &uri,
            &json!({"rules": [{"index": 3, "priority": 1}, {"glob": "*.iso", "priority": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/rules/0/index", "/rules/1/glob"]);
    assert_eq!(h.engine.priorities(tid), vec![0, 7, 4], "nothing applied");
    let (status, _, problem) = h.admin(Method::POST, &uri, &json!({"rules": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/rules"]);
    let (status, _, _) = h
        .admin(
            Method::POST,
            &format!("/v1/torrents/{}/select", id_of(8)),
            &json!({"rules": [{"index": 0, "priority": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A magnet without metadata has no files to select yet.
    let magnet_id = add_magnet(&h, 5, &json!({})).await;
    let (status, _, _) = h
        .admin(
            Method::POST,
            &format!("/v1/torrents/{magnet_id}/select"),
            &json!({"rules": [{"index": 0, "priority": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn actions_reach_the_engine_and_show_in_the_listing() {
    let h = Harness::start().await;
    let id = add_magnet(&h, 3, &json!({})).await;
    let tid: TorrentId = id.parse().unwrap();
    let uri = format!("/v1/torrents/{id}/action");
    for action in [
        json!({"action": "pause"}),
        json!({"action": "reannounce"}),
        json!({"action": "recheck"}),
        json!({"action": "sequential", "enabled": true}),
        json!({"action": "rate", "download_bps": 5_000_000, "upload_bps": null}),
    ] {
        let (status, _, body) = h.admin(Method::POST, &uri, &action).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{action}: {body}");
    }
    h.wait_for("the pause to reach the read model", |h| {
        h.state.torrents.get(&tid).unwrap().torrent.state
            == revaer_api_models::torrents::TorrentState::Paused
    })
    .await;
    let (_, _, detail) = h
        .admin(Method::GET, &format!("/v1/torrents/{id}"), &Value::Null)
        .await;
    assert_eq!(detail["download_limit_bps"], 5_000_000);
    assert_eq!(detail["sequential"], true);

    for (bad, pointer) in [
        (json!({"action": "explode"}), "/action"),
        (json!({"action": "sequential"}), ""),
        (
            json!({"action": "rate", "download_bps": 1_u64 << 40}),
            "/download_bps",
        ),
    ] {
        let (status, _, problem) = h.admin(Method::POST, &uri, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(pointers(&problem), [pointer], "{bad}");
    }
    let (status, _, _) = h
        .admin(
            Method::POST,
            &format!("/v1/torrents/{}/action", id_of(8)),
            &json!({"action": "pause"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, _) = h
        .admin(Method::POST, &uri, &json!({"action": "remove_data"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.wait_for("the removal to reach the read model", |h| {
        h.state.torrents.is_empty()
    })
    .await;
    assert!(h.state.store.catalog_all().unwrap().is_empty());
}

#[tokio::test]
async fn patch_replaces_labels() {
    let h = Harness::start().await;
    let id = add_magnet(&h, 4, &json!({"tags": ["a"], "category": "c"})).await;
    let uri = format!("/v1/torrents/{id}");
    let (status, _, body) = h
        .admin(Method::PATCH, &uri, &json!({"tags": ["b", "c"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tags"], json!(["b", "c"]));
    assert_eq!(body["category"], "c");
    let (_, _, body) = h.admin(Method::PATCH, &uri, &json!({"category": ""})).await;
    assert_eq!(body["category"], Value::Null);
    let (_, _, list) = h
        .admin(Method::GET, "/v1/torrents?tags=c", &Value::Null)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, _, problem) = h.admin(Method::PATCH, &uri, &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), [""]);
    let (status, _, problem) = h
        .admin(Method::PATCH, &uri, &json!({"tags": ["\u{7}"]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/tags/0"]);
    let (status, _, _) = h
        .admin(
            Method::PATCH,
            &format!("/v1/torrents/{}", id_of(8)),
            &json!({"tags": []}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_torrent_route_needs_a_key_and_writes_need_admin() {
    let h = Harness::start().await;
    let id = add_magnet(&h, 6, &json!({})).await;
    let routes = [
        (Method::GET, "/v1/torrents".to_owned()),
        (Method::POST, "/v1/torrents".to_owned()),
        (Method::GET, format!("/v1/torrents/{id}")),
        (Method::GET, format!("/v1/torrents/{id}/peers")),
        (Method::PATCH, format!("/v1/torrents/{id}")),
        (Method::POST, format!("/v1/torrents/{id}/select")),
        (Method::POST, format!("/v1/torrents/{id}/action")),
    ];
    let read_key = h.read_key.clone();
    for (method, uri) in &routes {
        let (status, headers, problem) = h.call(method.clone(), uri, None, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(problem["status"], 401);
        let (status, _, _) = h
            .call(method.clone(), uri, Some("rvk_not_a_key"), None, "")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = h
            .call(
                method.clone(),
                uri,
                Some(&read_key),
                Some("application/json"),
                "{}",
            )
            .await;
        let expected = if *method == Method::GET {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, expected, "read key: {method} {uri}");
    }
}

#[tokio::test]
async fn a_flooding_key_is_throttled_alone() {
    let h = Harness::start_with(3).await;
    let mut live = h.state.events.subscribe();
    let admin = h.admin_key.clone();
    let reader = h.read_key.clone();
    let mut throttled = None;
    for _ in 0..10 {
        let (status, headers, problem) = h
            .call(Method::GET, "/v1/torrents", Some(&admin), None, "")
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(problem["status"], 429);
            throttled = Some(headers[header::RETRY_AFTER].to_str().unwrap().to_owned());
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let retry_after: u64 = throttled.expect("never throttled").parse().unwrap();
    assert!(retry_after >= 1);
    let (status, _, _) = h
        .call(Method::GET, "/v1/torrents", Some(&reader), None, "")
        .await;
    assert_eq!(status, StatusCode::OK, "another key is unaffected");
    // Announced once as an event, by key id.
    let announced = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let e = live.recv().await.unwrap();
            if let revaer_api_models::events::Event::RateLimited { key_id } = &e.event {
                return key_id.clone();
            }
        }
    })
    .await
    .expect("a rate_limited event");
    assert!(!announced.is_empty() && !h.admin_key.contains(&announced));
}

#[tokio::test]
async fn engine_down_reads_are_stale_and_writes_are_503() {
    let h = Harness::start().await;
    let id = add_magnet(&h, 7, &json!({"tags": ["keep"]})).await;
    h.kill_engine();
    h.wait_for("the read model to notice", |h| h.state.torrents.is_stale())
        .await;
    let (status, _, list) = h.admin(Method::GET, "/v1/torrents", &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["stale"], true);
    assert_eq!(list["items"][0]["id"], id);
    let (status, _, detail) = h
        .admin(Method::GET, &format!("/v1/torrents/{id}"), &Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["stale"], true);
    assert_eq!(detail["tags"], json!(["keep"]));
    // Peers are live state: never served from a cache.
    let (status, _, problem) = h
        .admin(
            Method::GET,
            &format!("/v1/torrents/{id}/peers"),
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    for (uri, body) in [
        ("/v1/torrents".to_owned(), json!({"magnet": magnet(8)})),
        (
            format!("/v1/torrents/{id}/action"),
            json!({"action": "pause"}),
        ),
    ] {
        let (status, headers, problem) = h.admin(Method::POST, &uri, &body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {problem}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }
    // Labels live in the API: still writable.
    let (status, _, _) = h
        .admin(
            Method::PATCH,
            &format!("/v1/torrents/{id}"),
            &json!({"tags": ["new"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn docs_metrics_and_health_routes() {
    let h = Harness::start().await;
    let admin = h.admin_key.clone();
    let (status, _, spec) = h
        .call(Method::GET, "/docs/openapi.json", Some(&admin), None, "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let (status, headers, page) = h.call(Method::GET, "/docs", Some(&admin), None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.as_str().unwrap().contains("/v1/torrents"));
    for uri in ["/docs", "/docs/openapi.json", "/metrics", "/v1/events"] {
        let (status, _, _) = h.call(Method::GET, uri, None, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, headers, text) = h
        .call(Method::GET, "/metrics", Some(&admin), None, "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        text.as_str().unwrap().contains(
            "revaer_http_requests_total{method=\"GET\",route=\"/docs\",status=\"200\"} 1"
        ),
        "{text}"
    );
    let (status, _, live) = h.call(Method::GET, "/health", None, None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live["status"], "alive");
    // No supervisor snapshot in the harness: readiness is honestly degraded.
    let (status, _, full) = h
        .call(Method::GET, "/health/full", Some(&admin), None, "")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(full["status"], "degraded");
    let (status, _, problem) = h
        .call(Method::DELETE, "/v1/torrents", Some(&admin), None, "")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(problem["status"], 405);
    let (status, _, problem) = h
        .call(Method::GET, "/v2/nothing", Some(&admin), None, "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
}

async fn completed_upload(h: &Harness, name: &[u8]) -> (String, TorrentId) {
    let mut torrent = b"d".to_vec();
    torrent.extend_from_slice(name);
    let (status, _, value) = h.upload(&torrent, None).await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    let id = value["id"].as_str().unwrap().to_owned();
    let tid: TorrentId = id.parse().unwrap();
    h.engine.emit(revaer_ipc::engine::EngineEvent::Completed {
        id: tid,
        traceparent: None,
    });
    (id, tid)
}

async fn wait_job(h: &Harness, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, detail) = h
            .admin(Method::GET, &format!("/v1/torrents/{id}"), &Value::Null)
            .await;
        if detail["fsops_job"]["state"] == state && detail["fsops"] == state {
            return detail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job never {state}: {detail:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn completion_runs_an_fsops_job_once_and_shows_its_steps() {
    let h = Harness::start().await;
    h.fsops.release();
    let mut live = h.state.events.subscribe();
    let (id, _) = completed_upload(&h, b"4:infoe-done").await;
    let detail = wait_job(&h, &id, "completed").await;
    let job = &detail["fsops_job"];
    assert_eq!(job["steps"].as_array().unwrap().len(), 9, "{job}");
    assert_eq!(
        job["steps"][0],
        json!({"step": "validate", "outcome": "done"})
    );
    assert!(job["library_path"].as_str().unwrap().starts_with("lib/"));
    assert_eq!(job["attempts"], 1);
    assert_eq!(detail["fsops"], "completed");
    // Completion reported again (engine restart): no second job.
    let tid: TorrentId = id.parse().unwrap();
    h.engine.emit(revaer_ipc::engine::EngineEvent::Completed {
        id: tid,
        traceparent: None,
    });
    let mut kinds = Vec::new();
    while !kinds.contains(&"fsops_completed".to_owned()) {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap();
        kinds.push(e.event.kind().as_str().to_owned());
    }
    assert!(kinds.contains(&"fsops_started".to_owned()));
    assert_eq!(kinds.iter().filter(|k| *k == "fsops_step").count(), 9);
    assert_eq!(h.fsops.jobs.lock().unwrap().len(), 1);
    let job = &h.fsops.jobs.lock().unwrap()[0];
    assert_eq!(job.files.len(), 3);
    assert_eq!(job.source, job.name);
}

#[tokio::test]
async fn an_interrupted_job_resumes_at_its_journaled_step_and_completes_once() {
    let h = Harness::start().await;
    let (id, _) = completed_upload(&h, b"4:hold-me").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let job = h.state.store.fsops_job_latest(&id).unwrap();
        if job.as_ref().and_then(|j| j.step.as_deref()) == Some("transfer") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached transfer: {job:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // FsOps dies mid-transfer, then comes back.
    h.restart_fsops();
    h.fsops.release();
    let detail = wait_job(&h, &id, "completed").await;
    let jobs = h.fsops.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 2, "dispatched twice: {jobs:#?}");
    assert_eq!(
        jobs[1].resume_at,
        Some(revaer_ipc::fsops::FsopsStep::Transfer)
    );
    assert_eq!(jobs[1].attempt, 2);
    assert_eq!(detail["fsops_job"]["attempts"], 2);
    let steps = detail["fsops_job"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9, "each step journaled once: {steps:?}");
}

#[tokio::test]
async fn a_failed_job_degrades_health_until_retried() {
    let h = Harness::start().await;
    h.report_all_running();
    h.wait_for("health ok", |h| {
        crate::routes::current_health(&h.state).degraded.is_empty()
    })
    .await;
    h.fsops.release();
    let (id, _) = completed_upload(&h, b"4:fail-once").await;
    let detail = wait_job(&h, &id, "failed").await;
    assert_eq!(detail["fsops_job"]["step"], "extract");
    assert_eq!(detail["fsops_job"]["error"], "scripted failure");
    h.wait_for("the failure count", |h| {
        h.state.fsops_jobs.failed_jobs() == 1
    })
    .await;
    let health = crate::routes::current_health(&h.state);
    assert_eq!(health.degraded, vec!["fsops".to_owned()], "{health:?}");
    let reason = health.workers["fsops"].reason.clone().unwrap_or_default();
    assert!(reason.contains("fsops_retry"), "{reason}");
    let uri = format!("/v1/torrents/{id}/action");
    let (status, _, body) = h
        .admin(Method::POST, &uri, &json!({"action": "fsops_retry"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let detail = wait_job(&h, &id, "completed").await;
    assert_eq!(detail["fsops_job"]["attempts"], 2);
    let jobs = h.fsops.jobs.lock().unwrap().clone();
    assert_eq!(
        jobs[1].resume_at,
        Some(revaer_ipc::fsops::FsopsStep::Extract)
    );
    h.wait_for("the failure to clear", |h| {
        h.state.fsops_jobs.failed_jobs() == 0
    })
    .await;
    let health = crate::routes::current_health(&h.state);
    assert!(health.degraded.is_empty(), "{health:?}");
    let (status, _, _) = h
        .admin(Method::POST, &uri, &json!({"action": "fsops_retry"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing failed any more");
}

/// Security review as a table: every operation in the OpenAPI document,
/// with no key, a read key and an admin key.
#[tokio::test]
async fn every_documented_route_enforces_auth_and_scope() {
    let h = Harness::start().await;
    let id = add_magnet(&h, 9, &json!({})).await;
    let doc: Value = serde_json::from_str(&crate::openapi::json()).unwrap();
    let (read, admin) = (h.read_key.clone(), h.admin_key.clone());
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let uri = path.replace("{id}", &id);
        for method in operations.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            if uri == "/v1/events" {
                continue; // a stream: checked below without reading it
            }
            let open = uri == "/health";
            let (status, _, _) = h.call(method.clone(), &uri, None, None, "").await;
            if open {
                assert_eq!(status, StatusCode::OK, "{method} {uri}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} without a key"
                );
            }
            let admin_only = uri.starts_with("/v1/keys");
            let (status, _, _) = h
                .call(
                    method.clone(),
                    &uri,
                    Some(&read),
                    Some("application/json"),
                    "{}",
                )
                .await;
            if method == Method::GET && !admin_only {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {uri} refused a read key: {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {uri} with a read key"
                );
            }
            let (status, _, _) = h
                .call(
                    method.clone(),
                    &uri,
                    Some(&admin),
                    Some("application/json"),
                    "{}",
                )
                .await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{method} {uri} refused the admin key: {status}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 13, "only {checked} operations checked");
    let (status, _, _) = h.call(Method::GET, "/v1/events", None, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_add_requests_trace_context_reaches_the_fsops_job() {
    let h = Harness::start().await;
    h.fsops.release();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let boundary = "tp-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"torrent\"; filename=\"t\"\r\n\r\nd4:trace\r\n--{boundary}--\r\n"
    );
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/torrents")
        .header("authorization", format!("Bearer {}", h.admin_key))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("traceparent", traceparent)
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = tower::ServiceExt::oneshot(h.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let id: TorrentId = serde_json::from_slice::<Value>(&bytes).unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    h.engine.emit(revaer_ipc::engine::EngineEvent::Completed {
        id,
        traceparent: None,
    });
    wait_job(&h, &id.to_string(), "completed").await;
    let jobs = h.fsops.jobs.lock().unwrap().clone();
    assert_eq!(jobs[0].traceparent.as_deref(), Some(traceparent));
    // A malformed header is not remembered.
    assert!(!revaer_ipc::trace::validate_traceparent("00-xyz"));
}

/// One admin request through the router, on a task of its own (so on a
/// runtime worker thread); its status and JSON body.
fn spawn_admin_call(
    h: &Harness,
    method: Method,
    uri: String,
    body: Option<Value>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    use tower::ServiceExt as _;
    let router = h.router.clone();
    let key = h.admin_key.clone();
    tokio::spawn(async move {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                axum::body::Body::from(body.to_string())
            }
            None => axum::body::Body::empty(),
        };
        let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

/// The control plane never waits on the state database: while a write
/// holds it (a slow disk), `/health`, `/health/full`, the list, a detail
/// and the key list answer, even with key and label writes queued behind
/// the database, more of them than there are runtime threads. Those finish
/// once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_state_database_never_stalls_health_or_the_list() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let h = Harness::start().await;
    let id = add_magnet(&h, 1, &json!({})).await;
    let released = Arc::new(AtomicBool::new(false));
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let (store, released) = (Arc::clone(&h.state.store), Arc::clone(&released));
        std::thread::spawn(move || {
            let conn = store.conn();
            held_tx.send(()).unwrap();
            // Held until the test has its answers; a regression that
            // blocks on the database fails after a minute, it never hangs.
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
            released.store(true, Ordering::SeqCst);
            drop(conn);
        })
    };
    held_rx.recv().unwrap();
    // Writes wait for the database, on the blocking pool.
    let mut queued = Vec::new();
    for n in 0..4 {
        queued.push(spawn_admin_call(
            &h,
            Method::POST,
            "/v1/keys".into(),
            Some(json!({ "name": format!("queued-{n}"), "scope": "read" })),
        ));
    }
    queued.push(spawn_admin_call(
        &h,
        Method::PATCH,
        format!("/v1/torrents/{id}"),
        Some(json!({ "tags": ["slow-disk"] })),
    ));
    queued.push(spawn_admin_call(
        &h,
        Method::POST,
        "/v1/keys".into(),
        Some(json!({ "name": "while-stuck", "scope": "read" })),
    ));
    // On the worker threads too, so a handler blocking one would show.
    for round in 0..3 {
        let (status, live) = spawn_admin_call(&h, Method::GET, "/health".into(), None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{live}");
        let (_, full) = spawn_admin_call(&h, Method::GET, "/health/full".into(), None)
            .await
            .unwrap();
        assert!(full["status"].is_string(), "{full}");
        let (status, page) =
            spawn_admin_call(&h, Method::GET, "/v1/torrents?limit=100".into(), None)
                .await
                .unwrap();
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"][0]["id"], id.as_str());
        // Reads of the database go through its read-only connection.
        let (status, detail) =
            spawn_admin_call(&h, Method::GET, format!("/v1/torrents/{id}"), None)
                .await
                .unwrap();
        assert_eq!(status, StatusCode::OK, "{detail}");
        let (status, keys) = spawn_admin_call(&h, Method::GET, "/v1/keys".into(), None)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{keys}");
        assert!(
            !released.load(Ordering::SeqCst),
            "round {round}: the control plane waited for the database"
        );
    }
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    for call in queued {
        let (status, body) = call.await.unwrap();
        assert!(status.is_success(), "{status} {body}");
    }
    let (_, _, detail) = h
        .admin(Method::GET, &format!("/v1/torrents/{id}"), &Value::Null)
        .await;
    assert_eq!(detail["tags"], json!(["slow-disk"]));
}
