//! The data-channel handshake (DESIGN §2).
//!
//! A server (the engine or fsops worker) speaks first:
//!
//! 1. server → client: [`ServerHello`] (protocol version, build id, role,
//!    fresh 256-bit nonce);
//! 2. client → server: [`ClientHello`] (its version, build id, role, and
//!    `HMAC(boot secret, domain || nonce || client role)`);
//! 3. server → client: [`HandshakeOutcome`].
//!
//! Each side checks the other's version, build id and role; the server also
//! checks the proof. Any mismatch ends the handshake with
//! [`IpcError::Handshake`] naming what did not match, logged with
//! `tracing::warn!` (never the secret or the proof). The whole exchange is
//! bounded by [`HandshakeParams::timeout`]. The client checks the server
//! before it computes a proof, so it never answers a nonce from a peer it
//! would not talk to.
//!
//! The hello types are the one part of the protocol that must never change
//! shape: they are how two different versions find out they differ.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    connection::Connection,
    error::IpcError,
    protocol::{ClientHello, HandshakeOutcome, PROTOCOL_VERSION, Role, ServerHello},
    secret::{BootSecret, random_nonce},
};

/// What one side of a handshake is and expects.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeParams<'a> {
    /// Our own role.
    pub role: Role,
    /// The role the peer must have.
    pub peer_role: Role,
    /// Our build id; the peer's must be identical.
    pub build_id: &'a str,
    /// The per-boot secret.
    pub secret: &'a BootSecret,
    /// Bound on the whole handshake.
    pub timeout: Duration,
}

fn check_peer(
    p: &HandshakeParams<'_>,
    version: u16,
    build_id: &str,
    role: Role,
) -> Result<(), String> {
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: ours {PROTOCOL_VERSION}, peer's {version}"
        ));
    }
    if build_id != p.build_id {
        return Err(format!(
            "build id mismatch: ours {:?}, peer's {:?}",
            p.build_id,
            truncate(build_id)
        ));
    }
    if role != p.peer_role {
        return Err(format!(
            "role mismatch: expected {}, peer is {role}",
            p.peer_role
        ));
    }
    Ok(())
}

/// Keeps a peer-chosen string from flooding the logs.
fn truncate(s: &str) -> &str {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs the server side of the handshake on a fresh connection.
pub async fn server_handshake<S>(
    conn: &mut Connection<S>,
    p: &HandshakeParams<'_>,
) -> Result<(), IpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = tokio::time::timeout(p.timeout, server_steps(conn, p))
        .await
        .unwrap_or(Err(IpcError::Timeout));
    if let Err(e) = &result {
        tracing::warn!(
            role = %p.role,
            peer_role = %p.peer_role,
            error = %e,
            "ipc handshake rejected"
        );
    }
    result
}

async fn server_steps<S>(conn: &mut Connection<S>, p: &HandshakeParams<'_>) -> Result<(), IpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let nonce = random_nonce()?;
    conn.send(&ServerHello {
        protocol_version: PROTOCOL_VERSION,
        build_id: p.build_id.to_owned(),
        role: p.role,
        nonce,
    })
    .await?;

    let hello = match conn.recv::<ClientHello>().await {
        Ok(Some(hello)) => hello,
        Ok(None) => return Err(IpcError::Closed),
        Err(IpcError::Decode(e)) => {
            let reason = "malformed client hello".to_owned();
            reject(conn, &reason).await;
            return Err(IpcError::Handshake(format!("{reason}: {e}")));
        }
        Err(e) => return Err(e),
    };

    let verdict =
        check_peer(p, hello.protocol_version, &hello.build_id, hello.role).and_then(|()| {
            if p.secret.verify(&nonce, hello.role, &hello.proof) {
                Ok(())
            } else {
                Err("bad boot-secret proof".to_owned())
            }
        });
    match verdict {
        Ok(()) => conn.send(&HandshakeOutcome::Accepted).await,
        Err(reason) => {
            reject(conn, &reason).await;
            Err(IpcError::Handshake(reason))
        }
    }
}

/// Best effort: tell the client why before the connection is dropped.
async fn reject<S>(conn: &mut Connection<S>, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outcome = HandshakeOutcome::Rejected {
        reason: reason.to_owned(),
    };
    if let Err(e) = conn.send(&outcome).await {
        tracing::debug!(error = %e, "could not send handshake rejection");
    }
}

/// Runs the client side of the handshake on a fresh connection.
pub async fn client_handshake<S>(
    conn: &mut Connection<S>,
    p: &HandshakeParams<'_>,
) -> Result<(), IpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = tokio::time::timeout(p.timeout, client_steps(conn, p))
        .await
        .unwrap_or(Err(IpcError::Timeout));
    if let Err(e) = &result {
        tracing::warn!(
            role = %p.role,
            peer_role = %p.peer_role,
            error = %e,
            "ipc handshake failed"
        );
    }
    result
}

async fn client_steps<S>(conn: &mut Connection<S>, p: &HandshakeParams<'_>) -> Result<(), IpcError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match conn.recv::<ServerHello>().await {
        Ok(Some(hello)) => hello,
        Ok(None) => return Err(IpcError::Closed),
        Err(IpcError::Decode(e)) => {
            return Err(IpcError::Handshake(format!("malformed server hello: {e}")));
        }
        Err(e) => return Err(e),
    };
    check_peer(p, hello.protocol_version, &hello.build_id, hello.role)
        .map_err(IpcError::Handshake)?;

    conn.send(&ClientHello {
        protocol_version: PROTOCOL_VERSION,
        build_id: p.build_id.to_owned(),
        role: p.role,
        proof: p.secret.proof(&hello.nonce, p.role),
    })
    .await?;

    match conn.recv::<HandshakeOutcome>().await? {
        Some(HandshakeOutcome::Accepted) => Ok(()),
        Some(HandshakeOutcome::Rejected { reason }) => Err(IpcError::Handshake(format!(
            "rejected by {}: {}",
            p.peer_role,
            truncate(&reason)
        ))),
        None => Err(IpcError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, DuplexStream};

    const BUILD: &str = "test-build-1";

    fn params(role: Role, peer_role: Role, secret: &BootSecret) -> HandshakeParams<'_> {
        HandshakeParams {
            role,
            peer_role,
            build_id: BUILD,
            secret,
            timeout: Duration::from_secs(5),
        }
    }

    fn pair() -> (Connection<DuplexStream>, Connection<DuplexStream>) {
        let (a, b) = tokio::io::duplex(4096);
        (Connection::new(a), Connection::new(b))
    }

    async fn run(
        server: HandshakeParams<'_>,
        client: HandshakeParams<'_>,
    ) -> (Result<(), IpcError>, Result<(), IpcError>) {
        let (mut s, mut c) = pair();
        // Each side hangs up when it is done, as real callers do.
        tokio::join!(
            async move { server_handshake(&mut s, &server).await },
            async move { client_handshake(&mut c, &client).await }
        )
    }

    #[tokio::test]
    async fn succeeds_with_matching_parameters() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (s, c) = run(
            params(Role::Engine, Role::Api, &secret),
            params(Role::Api, Role::Engine, &secret),
        )
        .await;
        s.unwrap();
        c.unwrap();
    }

    #[tokio::test]
    async fn connection_is_usable_after_the_handshake() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (mut s, mut c) = pair();
        let sp = params(Role::Fsops, Role::Api, &secret);
        let cp = params(Role::Api, Role::Fsops, &secret);
        let (rs, rc) = tokio::join!(server_handshake(&mut s, &sp), client_handshake(&mut c, &cp));
        rs.unwrap();
        rc.unwrap();
        c.send(&42u32).await.unwrap();
        assert_eq!(s.recv::<u32>().await.unwrap(), Some(42));
    }

    #[tokio::test]
    async fn wrong_secret_fails_on_both_sides() {
        let server_secret = BootSecret::from_bytes([1; 32]);
        let client_secret = BootSecret::from_bytes([2; 32]);
        let (server, client) = run(
            params(Role::Engine, Role::Api, &server_secret),
            params(Role::Api, Role::Engine, &client_secret),
        )
        .await;
        assert!(
            matches!(server, Err(IpcError::Handshake(ref m)) if m.contains("proof")),
            "{server:?}"
        );
        assert!(
            matches!(client, Err(IpcError::Handshake(ref m)) if m.contains("proof")),
            "{client:?}"
        );
    }

    #[tokio::test]
    async fn version_mismatch_is_refused() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (mut s, mut c) = pair();
        // A fake server speaking a future protocol version.
        let fake_server = async {
            s.send(&ServerHello {
                protocol_version: PROTOCOL_VERSION + 1,
                build_id: BUILD.to_owned(),
                role: Role::Engine,
                nonce: [0; 32],
            })
            .await
            .unwrap();
            s.recv::<ClientHello>().await
        };
        let client_params = params(Role::Api, Role::Engine, &secret);
        let (got, c_res) = tokio::join!(fake_server, async move {
            client_handshake(&mut c, &client_params).await
        });
        assert!(
            matches!(c_res, Err(IpcError::Handshake(ref m)) if m.contains("protocol version")),
            "{c_res:?}"
        );
        // The client never sent a proof; it just went away.
        assert!(matches!(got, Ok(None)), "{got:?}");

        // And a client speaking a future version is refused by the server.
        let (mut s, mut c) = pair();
        let fake_client = async {
            let hello = c.recv::<ServerHello>().await.unwrap().unwrap();
            c.send(&ClientHello {
                protocol_version: PROTOCOL_VERSION + 1,
                build_id: BUILD.to_owned(),
                role: Role::Api,
                proof: secret.proof(&hello.nonce, Role::Api),
            })
            .await
            .unwrap();
            c.recv::<HandshakeOutcome>().await.unwrap().unwrap()
        };
        let server_params = params(Role::Engine, Role::Api, &secret);
        let (s_res, outcome) = tokio::join!(server_handshake(&mut s, &server_params), fake_client);
        assert!(
            matches!(s_res, Err(IpcError::Handshake(ref m)) if m.contains("protocol version")),
            "{s_res:?}"
        );
        assert!(matches!(outcome, HandshakeOutcome::Rejected { .. }));
    }

    #[tokio::test]
    async fn role_mismatch_is_refused() {
        let secret = BootSecret::from_bytes([5; 32]);
        // The client expected FsOps but reached the engine.
        let (s, c) = run(
            params(Role::Engine, Role::Api, &secret),
            params(Role::Api, Role::Fsops, &secret),
        )
        .await;
        assert!(
            matches!(c, Err(IpcError::Handshake(ref m)) if m.contains("role")),
            "{c:?}"
        );
        assert!(s.is_err());
        // The server only accepts the API; an FsOps client is refused.
        let (s, c) = run(
            params(Role::Engine, Role::Api, &secret),
            params(Role::Fsops, Role::Engine, &secret),
        )
        .await;
        assert!(
            matches!(s, Err(IpcError::Handshake(ref m)) if m.contains("role")),
            "{s:?}"
        );
        assert!(
            matches!(c, Err(IpcError::Handshake(ref m)) if m.contains("role")),
            "{c:?}"
        );
    }

    #[tokio::test]
    async fn build_id_mismatch_is_refused() {
        let secret = BootSecret::from_bytes([5; 32]);
        let mut client = params(Role::Api, Role::Engine, &secret);
        client.build_id = "other-build";
        let (s, c) = run(params(Role::Engine, Role::Api, &secret), client).await;
        assert!(
            matches!(c, Err(IpcError::Handshake(ref m)) if m.contains("build id")),
            "{c:?}"
        );
        assert!(matches!(s, Err(IpcError::Closed)), "{s:?}");
    }

    #[tokio::test]
    async fn garbage_instead_of_client_hello_is_an_error() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (s, mut raw) = tokio::io::duplex(4096);
        let mut s = Connection::new(s);
        raw.write_all(&[0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef])
            .await
            .unwrap();
        let res = server_handshake(&mut s, &params(Role::Engine, Role::Api, &secret)).await;
        assert!(
            matches!(res, Err(IpcError::Handshake(ref m)) if m.contains("malformed")),
            "{res:?}"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_server_hello_is_an_error() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (c, mut raw) = tokio::io::duplex(4096);
        let mut c = Connection::new(c);
        raw.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let res = client_handshake(&mut c, &params(Role::Api, Role::Engine, &secret)).await;
        assert!(
            matches!(res, Err(IpcError::Handshake(ref m)) if m.contains("malformed")),
            "{res:?}"
        );
        // An oversized header is refused too, without a panic.
        let (c, mut raw) = tokio::io::duplex(4096);
        let mut c = Connection::new(c);
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let res = client_handshake(&mut c, &params(Role::Api, Role::Engine, &secret)).await;
        assert!(
            matches!(res, Err(IpcError::FrameTooLarge { .. })),
            "{res:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (mut s, _silent_client) = pair();
        let res = server_handshake(&mut s, &params(Role::Engine, Role::Api, &secret)).await;
        assert!(matches!(res, Err(IpcError::Timeout)), "{res:?}");

        let (mut c, _silent_server) = pair();
        let res = client_handshake(&mut c, &params(Role::Api, Role::Engine, &secret)).await;
        assert!(matches!(res, Err(IpcError::Timeout)), "{res:?}");
    }

    #[tokio::test]
    async fn peer_hanging_up_is_closed() {
        let secret = BootSecret::from_bytes([5; 32]);
        let (mut s, c) = pair();
        drop(c);
        let res = server_handshake(&mut s, &params(Role::Engine, Role::Api, &secret)).await;
        assert!(res.is_err());
        let (s, mut c) = pair();
        drop(s);
        let res = client_handshake(&mut c, &params(Role::Api, Role::Engine, &secret)).await;
        assert!(matches!(res, Err(IpcError::Closed)), "{res:?}");
    }
}
