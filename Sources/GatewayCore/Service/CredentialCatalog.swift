import CSC
import Foundation

/// Credential descriptions fetched from upstreams, cached briefly, with the interoperability
/// fixes applied once, so `info`, `authorize` and `signHash` all see the same facts.
public actor CredentialCatalog {
    struct Cached {
        let credential: UpstreamCredential
        let fetched: Date
    }

    private var cache: [String: Cached] = [:]
    private var inFlight: [String: Task<UpstreamCredential, Error>] = [:]
    private let ttl: [String: Double]

    public init(ttlByUpstream: [String: Double]) { self.ttl = ttlByUpstream }

    /// The full description (chain, auth factors) of a routed credential.
    public func credential(_ route: CredentialRoute, backend: any SigningBackend, _ context: OperationContext) async throws -> UpstreamCredential {
        let key = route.upstream + "\u{0}" + route.upstreamCredentialID
        if let c = cache[key], Date().timeIntervalSince(c.fetched) < (ttl[route.upstream] ?? 60) { return c.credential }
        if let t = inFlight[key] { return try await t.value }
        let request = CredentialInfoRequest(credentialID: route.upstreamCredentialID, certificates: .chain, authInfo: true)
        // One fetch serves every concurrent request for the same credential.
        let task = Task {
            let native = try await backend.credentialInfo(request, context)
            return UpstreamCredential(info: Self.withInteropFixes(native), nativeAlgorithms: Set(native.key.algorithms))
        }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        let fetched = try await task.value
        cache[key] = Cached(credential: fetched, fetched: Date())
        return fetched
    }

    public func forget(upstream: String) { cache = cache.filter { !$0.key.hasPrefix(upstream + "\u{0}") } }

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
