import CSC
import Foundation

/// What a credential's signer certificate must satisfy, resolved from credential → tenant →
/// gateway settings. Part of the verdict cache key: two tenants with different modes never
/// share a verdict.
public struct SignerCertificatePolicy: Sendable, Hashable {
    public var failureMode: RevocationFailureMode
    public var keyUsage: SignerKeyUsage
    /// PEM files, in configuration order.
    public var trustAnchors: [String]

    public init(failureMode: RevocationFailureMode, keyUsage: SignerKeyUsage, trustAnchors: [String]) {
        self.failureMode = failureMode; self.keyUsage = keyUsage; self.trustAnchors = trustAnchors
    }

    /// Credential's choice, else the tenant's, else the gateway's; anchors of the tenant, else of the upstream.
    public static func resolve(for route: CredentialRoute, tenant: TenantConfiguration?,
                               gateway: GatewayConfiguration) -> SignerCertificatePolicy {
        let own = route.signerCertificates
        let theirs = tenant?.signerCertificates
        let upstreamAnchors = gateway.upstreams.first { $0.name == route.upstream }?.trustAnchors ?? []
        return SignerCertificatePolicy(
            failureMode: own.failureMode ?? theirs?.failureMode ?? gateway.ocsp.failureMode,
            keyUsage: own.keyUsage ?? theirs?.keyUsage ?? gateway.ocsp.keyUsage,
            trustAnchors: theirs?.trustAnchors ?? upstreamAnchors)
    }
}

/// The certificate to check: the chain as the upstream described it (leaf first, base64 DER).
public struct SignerCertificateSubject: Sendable {
    public var upstream: String
    public var credentialID: String
    public var chain: [String]
    public var policy: SignerCertificatePolicy

    public init(upstream: String, credentialID: String, chain: [String], policy: SignerCertificatePolicy) {
        self.upstream = upstream; self.credentialID = credentialID; self.chain = chain; self.policy = policy
    }
}

/// What the gateway concluded about a signer certificate, and until when it holds.
public struct SignerCertificateVerdict: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Chain, validity and key usage fine; OCSP answered good.
        case good
        case revoked
        case expired
        case notYetValid = "not yet valid"
        /// No chain to the configured anchors (or no certificate at all).
        case untrusted
        /// Key usage does not allow signing under the policy.
        case unfitForSigning = "not fit for signing"
        /// The responder answered unknown.
        case unknown
        /// No usable answer: unreachable, timeout, invalid or unverifiable response, no responder.
        case unavailable
    }

    public var status: Status
    /// For logs, the usage event and the CSC error: why, in a sentence.
    public var detail: String
    /// Content address (sha-256, hex) of the OCSP response this verdict rests on, if any.
    public var evidence: String?
    /// Applied failure mode: the check did not get a clear "good" but passes (soft-fail).
    public var softFailed: Bool
    public var validUntil: Date

    public init(status: Status, detail: String, evidence: String? = nil, softFailed: Bool = false, validUntil: Date) {
        self.status = status; self.detail = detail; self.evidence = evidence; self.softFailed = softFailed
        self.validUntil = validUntil
    }

    public var passes: Bool { status == .good || softFailed }

    /// The CSC certificate status clients see in credentials/info.
    public var certificateStatus: CertificateStatus {
        switch status {
        case .revoked: .revoked
        case .expired, .notYetValid: .expired
        default: .valid
        }
    }
}

/// Decides whether a signer certificate may be used now. Implementations cache: the signHash
/// path asks on every request and expects a lookup, not a network round trip.
public protocol RevocationChecker: Sendable {
    func verdict(for subject: SignerCertificateSubject, _ context: OperationContext) async -> SignerCertificateVerdict
    /// Takes up a reloaded configuration (e.g. new trust anchors); throwing refuses the reload.
    func reload(_ configuration: LoadedConfiguration) throws
}

extension RevocationChecker {
    public func reload(_ configuration: LoadedConfiguration) throws {}
}

/// Where OCSP responses kept as evidence go: stored once, addressed by their SHA-256.
public protocol EvidenceStore: Sendable {
    /// Stores `der` if new; returns its address (lower-case hex SHA-256). Durable on return.
    func storeEvidence(_ der: Data) async throws -> String
    func evidence(address: String) async throws -> Data?
}

extension Gateway {
    /// The policy for one route: the credential's choice, else the tenant's, else the gateway's.
    func signerPolicy(_ route: CredentialRoute, tenantID: String) -> SignerCertificatePolicy {
        SignerCertificatePolicy.resolve(for: route, tenant: directory.tenants[tenantID], gateway: configuration)
    }

    /// The signer-certificate stage: nil when checking is off, else the verdict (cached by the checker).
    func signerVerdict(_ route: CredentialRoute, _ credential: UpstreamCredential, tenantID: String,
                       _ context: OperationContext) async -> SignerCertificateVerdict? {
        guard let revocation else { return nil }
        let subject = SignerCertificateSubject(upstream: route.upstream, credentialID: route.id,
                                               chain: credential.info.cert.certificates ?? [],
                                               policy: signerPolicy(route, tenantID: tenantID))
        return await revocation.verdict(for: subject, context)
    }

    /// Refuses a credential whose certificate is revoked, expired, untrusted, unfit, or (hard-fail)
    /// of unknown status; a soft-failed pass is logged and noted for the usage event.
    func requireUsableCertificate(_ route: CredentialRoute, _ credential: UpstreamCredential, _ caller: Caller,
                                  _ context: OperationContext, _ note: UsageNote) async throws {
        note.stage("certificate")
        guard let verdict = await signerVerdict(route, credential, tenantID: caller.tenantID, context) else { return }
        note.evidence(verdict.evidence)
        if verdict.passes {
            if verdict.softFailed {
                note.remark("signer certificate soft-failed: \(verdict.detail)")
                context.logger.warning("signer certificate check soft-failed; signing allowed by policy", metadata: [
                    "credential": .string(route.id), "status": .string(verdict.status.rawValue), "detail": .string(verdict.detail),
                ])
            }
            return
        }
        context.logger.notice("signer certificate refused", metadata: [
            "credential": .string(route.id), "status": .string(verdict.status.rawValue), "detail": .string(verdict.detail),
        ])
        throw Self.certificateError(route.id, verdict)
    }

    /// 400 for what the credential's owner must fix (revoked, expired, untrusted, unfit, unknown);
    /// 503 when the responder could not give an answer and the policy is hard-fail.
    static func certificateError(_ credentialID: String, _ verdict: SignerCertificateVerdict) -> CSCError {
        let subject = "Signing certificate of credential '\(credentialID)'"
        switch verdict.status {
        case .unavailable:
            return CSCError(status: 503, error: "temporarily_unavailable",
                            description: "\(subject) could not be checked: \(verdict.detail)", headers: ["Retry-After": "30"])
        case .unknown:
            return .invalidRequest("\(subject) has status unknown at its OCSP responder")
        case .good:
            return .invalidRequest("\(subject) is not usable")
        default:
            return .invalidRequest("\(subject) is \(verdict.status.rawValue): \(verdict.detail)")
        }
    }
}
