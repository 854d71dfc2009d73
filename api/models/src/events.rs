//! `GET /v1/events`: the events a client receives over SSE (DESIGN §6).
