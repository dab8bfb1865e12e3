import CSC
import Foundation
import GatewayCore
import GatewayServer
import HummingbirdTesting
import Testing

// CSC-API.md §3 and §4.1: how a client gets a token and what it hears when it gets it wrong.

@Suite("auth/login")
struct LoginTests {
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture() }

    @Test("HTTP Basic with the right secret gives an access token that opens the API")
    func basicOK() async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/auth/login", authorization: basic(Clients.acme.id, Clients.acme.secret))
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/json")
            let token = try CSCCodec.v1.decodeTokenResult(r.json())
            #expect(token.expiresIn == 3600)
            #expect(token.refreshToken == nil)
            let list = try await client.post("/csc/v1/credentials/list", authorization: "Bearer \(token.accessToken)")
            #expect(list.status == .ok)
        }
    }

    @Test("rememberMe gives a refresh token, which logs in again without Basic")
    func rememberMe() async throws {
        try await fixture.test { client in
            let first = try await client.login(rememberMe: true)
            let refresh = try #require(first.refreshToken)
            let r = try await client.post("/csc/v1/auth/login", json: #"{"refresh_token":"\#(refresh)"}"#)
            #expect(r.status == .ok)
            let second = try CSCCodec.v1.decodeTokenResult(r.json())
            #expect(second.accessToken != first.accessToken)
            // Rotation: the old refresh token is spent.
            let again = try await client.post("/csc/v1/auth/login", json: #"{"refresh_token":"\#(refresh)"}"#)
            try expectCSCError(again, status: 400, error: "authentication_error")
        }
    }

    @Test("a wrong secret and an unknown client get the same 400 authentication_error", arguments: [
        (Clients.acme.id, "wrong-secret"), (Clients.acme.id, ""), ("no-such-client", Clients.acme.secret),
        (Clients.globex.id, Clients.acme.secret),
    ] as [(String, String)])
    func wrongSecret(_ id: String, _ secret: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/auth/login", authorization: basic(id, secret))
            try expectCSCError(r, status: 400, error: "authentication_error", description: "Authentication failed")
        }
    }

    @Test("a malformed Basic header is 401 invalid_request", arguments: [
        "Basic !!!not-base64!!!", "Basic " + Data("no-colon-here".utf8).base64EncodedString(), "Basic",
        "Digest username=\"acme-app\"", "Bearer abc",
    ])
    func malformedBasic(_ header: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/auth/login", authorization: header)
            try expectCSCError(r, status: 401, error: "invalid_request")
            #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Basic") == true)
        }
    }

    @Test("no Authorization header and no refresh token is 401 invalid_request")
    func missingBasic() async throws {
        try await fixture.test { client in
            try expectCSCError(try await client.post("/csc/v2/auth/login"), status: 401, error: "invalid_request")
        }
    }

    @Test("auth/login takes the Basic secret literally: no percent-decoding (RFC 7617, unlike OAuth's RFC 6749 §2.3.1)")
    func basicSecretIsLiteral() async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/auth/login",
                                          authorization: basic(Clients.acmePercent.id, Clients.acmePercent.secret))
            #expect(r.status == .ok, "\(r.text)")
        }
    }

    @Test("auth/revoke ends the token at once")
    func revoke() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/auth/revoke", json: #"{"token":"\#(token.accessToken)"}"#,
                                          authorization: "Bearer \(token.accessToken)")
            #expect(r.status == .noContent)
            #expect(r.body.readableBytes == 0)
            let after = try await client.post("/csc/v1/credentials/list", authorization: "Bearer \(token.accessToken)")
            #expect(after.status == .unauthorized)
        }
    }
}

@Suite("oauth2/token")
struct OAuthTokenTests {
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture() }

    @Test("client_secret_basic: client_credentials gives a Bearer token, not cached", arguments: [
        "/oauth2/token", "/csc/v2/oauth2/token", "/csc/v1/oauth2/token",
    ])
    func clientSecretBasic(_ uri: String) async throws {
        try await fixture.test { client in
            let r = try await client.postForm(uri, "grant_type=client_credentials",
                                              authorization: basic(Clients.acme.id, Clients.acme.secret))
            #expect(r.status == .ok)
            let o = try r.json()
            #expect(try o.string("token_type") == "Bearer")
            #expect(try o.int("expires_in") == 3600)
            #expect(r.headers[.cacheControl] == "no-store")
            let token = try o.requiredString("access_token")
            let list = try await client.post("/csc/v2/credentials/list", authorization: "Bearer \(token)")
            #expect(list.status == .ok)
        }
    }

    @Test("client_secret_post: client_id and client_secret in the form")
    func clientSecretPost() async throws {
        try await fixture.test { client in
            let r = try await client.postForm(
                "/oauth2/token",
                "grant_type=client_credentials&client_id=\(Clients.acme.id)&client_secret=\(Clients.acme.secret)")
            #expect(r.status == .ok)
            #expect(try r.json().string("token_type") == "Bearer")
        }
    }

    @Test("wrong or missing client authentication is 401 invalid_client", arguments: [
        ("grant_type=client_credentials&client_id=acme-app&client_secret=wrong", nil),
        ("grant_type=client_credentials&client_id=acme-app", nil),
        ("grant_type=client_credentials", nil),
        ("grant_type=client_credentials", "Basic !!!"),
        ("grant_type=client_credentials", basic("acme-app", "wrong")),
    ] as [(String, String?)])
    func badClient(_ form: String, _ authorization: String?) async throws {
        try await fixture.test { client in
            let r = try await client.postForm("/oauth2/token", form, authorization: authorization)
            try expectCSCError(r, status: 401, error: "invalid_client")
        }
    }

    @Test("refresh_token grant rotates the refresh token")
    func refreshGrant() async throws {
        try await fixture.test { client in
            let login = try await client.login(rememberMe: true)
            let refresh = try #require(login.refreshToken)
            let auth = basic(Clients.acme.id, Clients.acme.secret)
            let r = try await client.postForm("/oauth2/token", "grant_type=refresh_token&refresh_token=\(refresh)",
                                              authorization: auth)
            #expect(r.status == .ok)
            let renewed = try r.json()
            #expect(try renewed.string("refresh_token") != nil)
            #expect(try renewed.string("refresh_token") != refresh)
            let reused = try await client.postForm("/oauth2/token", "grant_type=refresh_token&refresh_token=\(refresh)",
                                                   authorization: auth)
            try expectCSCError(reused, status: 400, error: "invalid_grant")
        }
    }

    @Test("another client cannot use a refresh token")
    func refreshByAnotherClient() async throws {
        try await fixture.test { client in
            let refresh = try #require(try await client.login(rememberMe: true).refreshToken)
            let r = try await client.postForm("/oauth2/token", "grant_type=refresh_token&refresh_token=\(refresh)",
                                              authorization: basic(Clients.globex.id, Clients.globex.secret))
            try expectCSCError(r, status: 400, error: "invalid_grant")
        }
    }

    @Test("an unsupported grant is 400 unsupported_grant_type", arguments: ["password", "authorization_code", "implicit"])
    func unsupportedGrant(_ grant: String) async throws {
        try await fixture.test { client in
            let r = try await client.postForm("/oauth2/token", "grant_type=\(grant)",
                                              authorization: basic(Clients.acme.id, Clients.acme.secret))
            try expectCSCError(r, status: 400, error: "unsupported_grant_type")
        }
    }

    @Test("a missing grant_type is 400 invalid_request")
    func missingGrant() async throws {
        try await fixture.test { client in
            let r = try await client.postForm("/oauth2/token", "", authorization: basic(Clients.acme.id, Clients.acme.secret))
            try expectCSCError(r, status: 400, error: "invalid_request")
        }
    }

    @Test("oauth2/revoke answers 204 and the token stops working")
    func oauthRevoke() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.postForm("/oauth2/revoke", "token=\(token.accessToken)",
                                              authorization: basic(Clients.acme.id, Clients.acme.secret))
            #expect(r.status == .noContent)
            let after = try await client.post("/csc/v1/credentials/list", authorization: "Bearer \(token.accessToken)")
            // CSC: expired_token means "expired or revoked".
            try expectCSCError(after, status: 401, error: "expired_token")
        }
    }
}

@Suite("Bearer tokens on CSC methods")
struct BearerTests {
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture() }

    @Test("no Authorization header is 401 invalid_token with a Bearer challenge")
    func missing() async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/credentials/list")
            try expectCSCError(r, status: 401, error: "invalid_token")
            #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
        }
    }

    @Test("a header not shaped like 'Bearer <token>' is 400 invalid_request", arguments: [
        "Token x", "Bearer", "Bearer ", "Basic " + Data("acme-app:acme-app-secret-0001".utf8).base64EncodedString(), "x",
    ])
    func malformed(_ header: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v1/credentials/list", authorization: header)
            try expectCSCError(r, status: 400, error: "invalid_request")
        }
    }

    @Test("a well-formed but unknown token is 401 invalid_token", arguments: ["unknown", "cga_AAAAAAAAAAAAAAAA", "bearer-ish"])
    func unknown(_ token: String) async throws {
        try await fixture.test { client in
            let r = try await client.post("/csc/v2/credentials/list", authorization: "Bearer \(token)")
            try expectCSCError(r, status: 401, error: "invalid_token")
        }
    }

    @Test("the scheme name is case-insensitive")
    func caseInsensitiveScheme() async throws {
        try await fixture.test { client in
            let token = try await client.login()
            let r = try await client.post("/csc/v1/credentials/list", authorization: "bearer \(token.accessToken)")
            #expect(r.status == .ok)
        }
    }
}
