//! What the emulator's end-to-end tests share: an emulator on a loopback port, and an HTTP
//! client aimed at it that reads answers as (status, JSON body).

#![allow(dead_code)] // each test file uses its own part of these

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use shardgate_mock::{Limits, MockConfig, MockServer};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Official limits except that a chat's bucket never refills during a test.
pub fn slow_limits() -> Limits {
    Limits {
        chat_rate_per_s: 0.001,
        ..Limits::official()
    }
}

pub async fn start(limits: Option<Limits>) -> std::io::Result<MockServer> {
    let config = MockConfig {
        limits,
        seed: Some(1),
        ..MockConfig::default()
    };
    MockServer::start(
        config,
        "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
    )
    .await
}

/// An HTTP client aimed at one emulator: every request names a path below the emulator's base
/// URL (`/bot<token>/sendMessage?...`, `/_mock/stats`), and most answers are read as
/// (status, JSON body), the shape every Bot API answer has.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(server: &MockServer) -> Result<Api, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Api {
            http,
            base: server.base_url(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`; the connection error itself when the emulator drops it.
    pub async fn send_get(&self, path: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http.get(self.url(path)).send().await
    }

    /// GET `path` and only its status code.
    pub async fn status(&self, path: &str) -> Result<u16, reqwest::Error> {
        Ok(self.send_get(path).await?.status().as_u16())
    }

    /// GET `path`, answered as (status, JSON body).
    pub async fn get(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        json_of(self.send_get(path).await?).await
    }

    /// GET `path` and decode its JSON body as `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, reqwest::Error> {
        self.send_get(path).await?.json().await
    }

    /// POST `path` without a body.
    pub async fn post(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        json_of(self.http.post(self.url(path)).send().await?).await
    }

    /// POST `body` as JSON to `path`.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        json_of(self.http.post(self.url(path)).json(body).send().await?).await
    }

    /// POST `form` as `application/x-www-form-urlencoded` to `path`.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), reqwest::Error> {
        json_of(self.http.post(self.url(path)).form(form).send().await?).await
    }
}

impl Api {
    /// POST `form` as `multipart/form-data` to `path`.
    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<(u16, Value), reqwest::Error> {
        json_of(
            self.http
                .post(self.url(path))
                .multipart(form)
                .send()
                .await?,
        )
        .await
    }
}

pub async fn json_of(resp: reqwest::Response) -> Result<(u16, Value), reqwest::Error> {
    let status = resp.status().as_u16();
    Ok((status, resp.json::<Value>().await?))
}
