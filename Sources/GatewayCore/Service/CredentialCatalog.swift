import CSC
import Foundation
import Synchronization

/// Credential descriptions fetched from upstreams, cached briefly, with the interoperability
/// fixes applied once, so `info`, `authorize` and `signHash` all see the same facts.
///
/// A cache hit is a lock and a dictionary read (every signHash makes one); only a miss goes
/// through the actor that lets one fetch serve every concurrent request for a credential.
public final class CredentialCatalog: Sendable {
    struct Cached {
        let credential: UpstreamCredential
        let fetched: Date
    }

    private let cache = Mutex<[String: Cached]>([:])
    private let fetches = SharedFetches()
    private let ttl: [String: Double]

    public init(ttlByUpstream: [String: Double]) { self.ttl = ttlByUpstream }

    /// The full description (chain, auth factors) of a routed credential.
    public func credential(_ route: CredentialRoute, backend: any SigningBackend, _ context: OperationContext) async throws -> UpstreamCredential {
        let key = route.upstream + "\u{0}" + route.upstreamCredentialID
        let maxAge = ttl[route.upstream] ?? 60
        if let c = cache.withLock({ $0[key] }), Date().timeIntervalSince(c.fetched) < maxAge { return c.credential }
        let request = CredentialInfoRequest(credentialID: route.upstreamCredentialID, certificates: .chain, authInfo: true)
        let fetched = try await fetches.fetch(key) {
            let native = try await backend.credentialInfo(request, context)
            return UpstreamCredential(info: Self.withInteropFixes(native), nativeAlgorithms: Set(native.key.algorithms))
        }
        cache.withLock { $0[key] = Cached(credential: fetched, fetched: Date()) }
        return fetched
    }

    public func forget(upstream: String) {
        cache.withLock { $0 = $0.filter { !$0.key.hasPrefix(upstream + "\u{0}") } }
    }
    /// pyHanko (and others) look for the exact signature OID they will use; an upstream that
    /// lists only `rsaEncryption` can still serve the PKCS#1 v1.5 OIDs, given `hashAlgo`.
    static func withInteropFixes(_ info: CredentialInfo) -> CredentialInfo {
        var info = info
        var algos = info.key.algorithms
        if algos.contains(SignatureAlgorithm.rsaEncryption) {
            for oid in SignatureAlgorithm.impliedByRSAEncryption where !algos.contains(oid) { algos.append(oid) }
        }
        // Upstreams have been seen to reorder key.algo between calls; a stable order helps caches and tests.
        info.key.algorithms = algos.sorted()
        return info
    }
}

/// A credential as the gateway presents it, and what its upstream itself accepts.
public struct UpstreamCredential: Sendable {
    public let info: CredentialInfo
    public let nativeAlgorithms: Set<String>

    /// The `signAlgo` and `hashAlgo` to send upstream for what the client asked.
    public func upstreamAlgorithm(for signAlgo: String, hash: HashAlgorithm?) -> (signAlgo: String, hashAlgo: String?) {
        if !nativeAlgorithms.contains(signAlgo), let implied = SignatureAlgorithm.rsaWithHash[signAlgo],
           nativeAlgorithms.contains(SignatureAlgorithm.rsaEncryption) {
            return (SignatureAlgorithm.rsaEncryption, implied.oid)
        }
        return (signAlgo, hash?.oid)
    }
}

/// One fetch per key at a time; later callers wait for the first one's answer.
actor SharedFetches {
    private var inFlight: [String: Task<UpstreamCredential, Error>] = [:]

    func fetch(_ key: String, _ make: @escaping @Sendable () async throws -> UpstreamCredential) async throws -> UpstreamCredential {
        if let t = inFlight[key] { return try await t.value }
        let task = Task { try await make() }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        return try await task.value
    }
}
