import Crypto
import CSC
import Foundation
import Synchronization

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
///
/// A lock, not an actor: every request authenticates, and a short critical section is cheaper
/// than a hop to another executor and back.
public final class TokenStore: Sendable {
    struct Entry {
        let caller: Caller
        let expires: Date
        let isRefresh: Bool
        /// Kept until it would have expired, so its holder hears "revoked", not "unknown".
        var revoked = false
    }

    struct State {
        var entries: [Data: Entry] = [:]
        var grantTokens: [String: Set<Data>] = [:]
        var issuedSinceSweep = 0
    }

    private let state = Mutex(State())
    private let accessLifetime: Int
    private let refreshLifetime: Int
    private let now: @Sendable () -> Date

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
        let access = "cga_" + randomBytes(32).base64URL
        let refresh = withRefreshToken ? "cgr_" + randomBytes(32).base64URL : nil
        let t = now()
        state.withLock { s in
            Self.sweepIfDue(&s, at: t)
            Self.store(access, Entry(caller: caller, expires: t.addingTimeInterval(Double(accessLifetime)), isRefresh: false), in: &s)
            if let refresh {
                Self.store(refresh, Entry(caller: caller, expires: t.addingTimeInterval(Double(refreshLifetime)), isRefresh: true), in: &s)
            }
        }
        return TokenResult(accessToken: access, refreshToken: refresh, expiresIn: accessLifetime)
    }

    private static func store(_ token: String, _ entry: Entry, in s: inout State) {
        let k = key(token)
        s.entries[k] = entry
        s.grantTokens[entry.caller.grantID, default: []].insert(k)
    }

    /// The caller behind an access token, or the CSC 401 a client must see.
    public func authenticate(accessToken: String) throws(CSCError) -> Caller {
        let k = Self.key(accessToken)
        guard let e = state.withLock({ $0.entries[k] }), !e.isRefresh else { throw .invalidToken() }
        guard !e.revoked else { throw .expiredToken("The access token was revoked") }
        guard e.expires > now() else { throw .expiredToken() }
        return e.caller
    }

    /// Exchanges a refresh token for a new access token and a new refresh token (rotation: the
    /// old refresh token stops working). `clientID`, when given, must own the token.
    public func refresh(_ token: String, clientID: String? = nil) throws(CSCError) -> TokenResult {
        let k = Self.key(token)
        let t = now()
        // Taken out under the lock, so two concurrent refreshes with one token cannot both win.
        let taken: Result<Entry, CSCError> = state.withLock { s in
            guard let e = s.entries[k], e.isRefresh, !e.revoked, clientID == nil || clientID == e.caller.clientID else {
                return .failure(.invalidGrant("The refresh token is not valid"))
            }
            s.entries[k] = nil
            s.grantTokens[e.caller.grantID]?.remove(k)
            guard e.expires > t else { return .failure(.invalidGrant("The refresh token has expired")) }
            return .success(e)
        }
        switch taken {
        case .success(let e): return issue(for: e.caller, withRefreshToken: true)
        case .failure(let error): throw error
        }
    }

    /// Revokes a token of `clientID`. A refresh token takes every token of its grant with it;
    /// an access token goes alone. Tokens of other clients are left untouched, silently
    /// (RFC 7009: the answer must not tell whether the token existed).
    public func revoke(_ token: String, clientID: String) {
        let k = Self.key(token)
        state.withLock { s in
            guard let e = s.entries[k], e.caller.clientID == clientID else { return }
            if e.isRefresh {
                for t in s.grantTokens[e.caller.grantID] ?? [] { s.entries[t]?.revoked = true }
            } else {
                s.entries[k]?.revoked = true
            }
        }
    }

    /// Drops every token of a tenant or client, e.g. when it is removed from configuration.
    public func revokeAll(where matches: (Caller) -> Bool) {
        state.withLock { s in
            for (k, e) in s.entries where matches(e.caller) { s.entries[k]?.revoked = true }
        }
    }

    public var count: Int { state.withLock { $0.entries.count } }

    private static func sweepIfDue(_ s: inout State, at t: Date) {
        s.issuedSinceSweep += 1
        guard s.issuedSinceSweep >= 1024 else { return }
        s.issuedSinceSweep = 0
        for (k, e) in s.entries where e.expires <= t {
            s.entries[k] = nil
            s.grantTokens[e.caller.grantID]?.remove(k)
        }
        s.grantTokens = s.grantTokens.filter { !$0.value.isEmpty }
    }
}
