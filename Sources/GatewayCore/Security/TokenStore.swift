import Crypto
import CSC
import Foundation

/// Who is calling: established once per request from the bearer token and carried typed.
public struct Caller: Sendable, Equatable {
    public let tenantID: String
    public let clientID: String
    public let scopes: Set<String>
    /// The login or token grant the access token belongs to; revoking its refresh token ends it.
    public let grantID: String

    public init(tenantID: String, clientID: String, scopes: Set<String>, grantID: String) {
        self.tenantID = tenantID; self.clientID = clientID; self.scopes = scopes; self.grantID = grantID
    }
}

/// Issues, checks and revokes the gateway's own access and refresh tokens.
///
/// Tokens are random and opaque; only their SHA-256 is kept, so a memory dump does not yield
/// usable tokens. Revocation takes effect on the next request.
public actor TokenStore {
    struct Entry {
        let caller: Caller
        let expires: Date
        let isRefresh: Bool
    }

    private var entries: [Data: Entry] = [:]
    private var grantTokens: [String: Set<Data>] = [:]
    private let accessLifetime: Int
    private let refreshLifetime: Int
    private let now: @Sendable () -> Date
    private var issuedSinceSweep = 0

    public init(accessLifetime: Int, refreshLifetime: Int, now: @escaping @Sendable () -> Date = Date.init) {
        self.accessLifetime = accessLifetime
        self.refreshLifetime = refreshLifetime
        self.now = now
    }

    private static func key(_ token: String) -> Data { Data(SHA256.hash(data: Data(token.utf8))) }

    public func issue(tenantID: String, clientID: String, scopes: Set<String>, withRefreshToken: Bool) -> TokenResult {
        let caller = Caller(tenantID: tenantID, clientID: clientID, scopes: scopes, grantID: randomBytes(12).base64URL)
        return issue(for: caller, withRefreshToken: withRefreshToken)
    }

    private func issue(for caller: Caller, withRefreshToken: Bool) -> TokenResult {
        sweepIfDue()
        let access = "cga_" + randomBytes(32).base64URL
        store(access, Entry(caller: caller, expires: now().addingTimeInterval(Double(accessLifetime)), isRefresh: false))
        var refresh: String?
        if withRefreshToken {
            let r = "cgr_" + randomBytes(32).base64URL
            store(r, Entry(caller: caller, expires: now().addingTimeInterval(Double(refreshLifetime)), isRefresh: true))
            refresh = r
        }
        return TokenResult(accessToken: access, refreshToken: refresh, expiresIn: accessLifetime)
    }

    private func store(_ token: String, _ entry: Entry) {
        let k = Self.key(token)
        entries[k] = entry
        grantTokens[entry.caller.grantID, default: []].insert(k)
    }

    /// The caller behind an access token, or the CSC 401 a client must see.
    public func authenticate(accessToken: String) throws(CSCError) -> Caller {
        guard let e = entries[Self.key(accessToken)], !e.isRefresh else { throw .invalidToken() }
        guard e.expires > now() else { throw .expiredToken() }
        return e.caller
    }

    /// Exchanges a refresh token for a new access token and a new refresh token (rotation: the
    /// old refresh token stops working). `clientID`, when given, must own the token.
    public func refresh(_ token: String, clientID: String? = nil) throws(CSCError) -> TokenResult {
        let k = Self.key(token)
        guard let e = entries[k], e.isRefresh, clientID == nil || clientID == e.caller.clientID else {
            throw .invalidGrant("The refresh token is not valid")
        }
        guard e.expires > now() else {
            entries[k] = nil
            throw .invalidGrant("The refresh token has expired")
        }
        entries[k] = nil
        grantTokens[e.caller.grantID]?.remove(k)
        return issue(for: e.caller, withRefreshToken: true)
    }

    /// Revokes a token of `clientID`. A refresh token takes every token of its grant with it;
    /// an access token goes alone. Tokens of other clients are left untouched, silently
    /// (RFC 7009: the answer must not tell whether the token existed).
    public func revoke(_ token: String, clientID: String) {
        let k = Self.key(token)
        guard let e = entries[k], e.caller.clientID == clientID else { return }
        if e.isRefresh {
            for t in grantTokens[e.caller.grantID] ?? [] { entries[t] = nil }
            grantTokens[e.caller.grantID] = nil
        } else {
            entries[k] = nil
            grantTokens[e.caller.grantID]?.remove(k)
        }
    }

    /// Drops every token of a tenant or client, e.g. when it is removed from configuration.
    public func revokeAll(where matches: @Sendable (Caller) -> Bool) {
        for (k, e) in entries where matches(e.caller) { entries[k] = nil }
    }

    public var count: Int { entries.count }

    private func sweepIfDue() {
        issuedSinceSweep += 1
        guard issuedSinceSweep >= 1024 else { return }
        issuedSinceSweep = 0
        let t = now()
        for (k, e) in entries where e.expires <= t {
            entries[k] = nil
            grantTokens[e.caller.grantID]?.remove(k)
        }
        grantTokens = grantTokens.filter { !$0.value.isEmpty }
    }
}
