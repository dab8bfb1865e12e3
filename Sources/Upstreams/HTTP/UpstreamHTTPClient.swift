import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The HTTP side of one CSC upstream: a connection pool per origin it calls (its base URL, and
/// its OAuth2 token endpoint when that lives elsewhere), all with the same TLS trust.
///
/// Not AsyncHTTPClient: that client flushes a request's head and body separately, so every
/// signHash reached the upstream as two TCP segments (two reads and two parser rounds on the
/// upstream, two write calls here), and its answer could come back on another event loop
/// than the client's connection. This one sends a request in one write and stays on the
/// caller's event loop.
final class UpstreamHTTPClient: Sendable {
    /// A URL split once into the pool that serves its origin and the request target.
    struct Target: Sendable {
        let pool: UpstreamConnectionPool
        let path: String
    }

    private let settings: UpstreamConnectionPool.Settings
    private let tls: NIOSSLContext?
    private let pools = Mutex<[UpstreamOrigin: UpstreamConnectionPool]>([:])

    /// `caFile`: PEM roots an `https` upstream's server certificate must chain to, instead of
    /// the system's (a vendor with a private CA).
    init(settings: UpstreamConnectionPool.Settings, caFile: String?, needsTLS: Bool) throws {
        self.settings = settings
        if needsTLS || caFile != nil {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile { tls.trustRoots = .file(caFile) }
            self.tls = try NIOSSLContext(configuration: tls)
        } else {
            self.tls = nil
        }
    }

    func target(_ url: String) throws(UpstreamURLError) -> Target {
        // URLComponents keeps a trailing slash of the path, which URL.path drops.
        guard let parsed = URLComponents(string: url), let scheme = parsed.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = parsed.host, !host.isEmpty else { throw UpstreamURLError(url: url) }
        let tls = scheme == "https"
        let origin = UpstreamOrigin(tls: tls, host: host, port: parsed.port ?? (tls ? 443 : 80))
        var path = parsed.percentEncodedPath.isEmpty ? "/" : parsed.percentEncodedPath
        if let query = parsed.percentEncodedQuery { path += "?" + query }
        let pool = pools.withLock { pools in
            if let p = pools[origin] { return p }
            let p = UpstreamConnectionPool(origin: origin, settings: settings, tls: tls ? self.tls : nil)
            pools[origin] = p
            return p
        }
        return Target(pool: pool, path: path)
    }

    func post(_ target: Target, headers: HTTPHeaders, body: ByteBuffer, deadline: NIODeadline) async throws
        -> UpstreamHTTPResponse {
        try await target.pool.post(path: target.path, headers: headers, body: body, deadline: deadline)
    }

    func shutdown() async {
        for pool in pools.withLock({ Array($0.values) }) { await pool.shutdown() }
    }
}

struct UpstreamURLError: Error, CustomStringConvertible {
    let url: String
    var description: String { "not an http or https URL with a host" }
}
