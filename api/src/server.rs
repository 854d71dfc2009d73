//! Binding the HTTP listener, moving it when `[api] listen` changes, and
//! stopping it gracefully.
//!
//! A new address is bound before the old listener is released, so a config
//! edit naming an unusable address leaves the API reachable where it was.

use std::net::SocketAddr;

use std::future::IntoFuture;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Serves `router` on the address in `listen`, re-binding when it changes,
/// until `shutdown` flips to true. Each successful bind is reported on
/// `bound`.
pub async fn serve(
    router: Router,
    mut listen: watch::Receiver<SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
    bound: mpsc::UnboundedSender<SocketAddr>,
) -> std::io::Result<()> {
    let mut addr = *listen.borrow_and_update();
    let mut listener = TcpListener::bind(addr).await?;
    loop {
        let local = listener.local_addr()?;
        tracing::info!(%local, "HTTP API listening");
        let _ = bound.send(local);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            while stop_rx.changed().await.is_ok() {
                if *stop_rx.borrow() {
                    break;
                }
            }
        });
        let mut server = std::pin::pin!(server.into_future());
        let next = loop {
            tokio::select! {
                result = &mut server => return result,
                Ok(()) = listen.changed() => {
                    let wanted = *listen.borrow_and_update();
                    if wanted == addr { continue; }
                    match TcpListener::bind(wanted).await {
                        Ok(new_listener) => { addr = wanted; break Some(new_listener); }
                        Err(e) => tracing::error!(%wanted, error = %e, "cannot bind the new API address; staying on the old one"),
                    }
                }
                Ok(()) = shutdown.changed() => if *shutdown.borrow() { break None },
            }
        };
        let _ = stop_tx.send(true);
        server.await?;
        match next {
            Some(new_listener) => listener = new_listener,
            None => return Ok(()),
        }
    }
}
