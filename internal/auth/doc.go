// Package auth checks SIP digest credentials on the server side (RFC 3261
// §22 with RFC 7616 digest, qop=auth, and RFC 8760's SHA-256 beside MD5).
// It owns the users file, nonces and replay protection; it does not know
// SIP messages, so the caller picks the headers and sends the 401.
//
// # Users file
//
// One line per user and realm, holding HA1 hashes, never passwords:
//
//	# user:realm:md5-ha1:sha256-ha1
//	alice:example.com:0d2a...e4f1:5c1a...9b07
//	bob:example.com::77aa...01cd
//
// HA1 is H(user ":" realm ":" password) in lower-case hex, H being MD5 or
// SHA-256. Either hash may be empty, and then that algorithm is not offered
// to that user; give both unless you know every client's algorithms, since a
// client answers the first challenge it understands (SHA-256 comes first).
// The realm is everything between the first colon and the last two, so a
// realm may hold a colon; a user may not. Blank lines and lines starting
// with # are ignored.
//
// An operator makes a line with bash and coreutils (or with [HA1]); the
// password is read without echo and never lands in the shell history:
//
//	u=alice r=example.com; read -rs p
//	printf '%s:%s:%s:%s\n' "$u" "$r" \
//	  "$(printf '%s' "$u:$r:$p" | md5sum | cut -d' ' -f1)" \
//	  "$(printf '%s' "$u:$r:$p" | sha256sum | cut -d' ' -f1)" >> users
//
// # Using it
//
// Build one [Authenticator] per server with [New]. For a request that needs
// credentials, pass the Authorization header values to
// [Authenticator.Verify]. On [ErrNoCredentials], [ErrUnauthorized] or
// [ErrReplay] answer 401 with one WWW-Authenticate header per value of
// [Authenticator.Challenge](realm, false); on [ErrStale] the same with
// stale=true, so the client retries without asking its user again.
//
// Why the nonces are stateless and how replay is bounded is in
// RATIONALE.md next to this file.
package auth
