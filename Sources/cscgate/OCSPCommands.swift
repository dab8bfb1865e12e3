import ArgumentParser
import AsyncHTTPClient
import CSC
import Foundation
import GatewayCore
import Logging
import Revocation
import Upstreams

/// The signer-certificate checker `serve` runs with, and the HTTP client it owns; nil when
/// `ocsp.enabled` is off.
struct SignerCertificateChecking {
    let checker: OCSPChecker
    let client: HTTPClient

    init?(_ loaded: LoadedConfiguration, evidence: (any EvidenceStore)?) throws {
        guard loaded.gateway.ocsp.enabled else { return nil }
        let anchors: TrustAnchors
        do {
            anchors = try TrustAnchors(configuration: loaded)
        } catch {
            FileHandle.standardError.write(Data("ocsp: \(error)\n".utf8))
            throw ExitCode(2)
        }
        client = Self.makeClient(loaded.gateway.ocsp)
        checker = OCSPChecker(evaluator: OCSPEvaluator(settings: loaded.gateway.ocsp, anchors: anchors, client: client),
                              evidence: evidence)
    }

    static func makeClient(_ settings: OCSPSettings) -> HTTPClient {
        var http = HTTPClient.Configuration()
        let ms = Int64(settings.timeout * 1000)
        http.timeout = .init(connect: .milliseconds(ms), read: .milliseconds(ms))
        http.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    }

    func shutdown() async { try? await client.shutdown() }
}

struct OCSPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ocsp", abstract: "Signer certificates and OCSP.",
                                                    subcommands: [CheckCredential.self])

    struct CheckCredential: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Check one credential's signer certificate now (no cache): status, responder, thisUpdate/nextUpdate, path.")

        @OptionGroup var options: ConfigOption
        @Argument(help: "<tenant>/<credential>") var credential: String

        func run() async throws {
            guard let slash = credential.firstIndex(of: "/") else { throw ValidationError("expected <tenant>/<credential>") }
            let tenantID = String(credential[..<slash]), credentialID = String(credential[credential.index(after: slash)...])
            let loaded: LoadedConfiguration
            do { loaded = try ConfigurationLoader.load(gatewayFile: options.config) } catch let error as ConfigurationError {
                FileHandle.standardError.write(Data("configuration is invalid:\n\(error)\n".utf8))
                throw ExitCode(2)
            }
            guard let tenant = loaded.tenants.first(where: { $0.id == tenantID }) else {
                throw ValidationError("no tenant '\(tenantID)'")
            }
            guard let route = tenant.credentials.first(where: { $0.id == credentialID }) else {
                throw ValidationError("tenant '\(tenantID)' has no credential '\(credentialID)'")
            }
            guard let upstream = loaded.gateway.upstreams.first(where: { $0.name == route.upstream }) else {
                throw ValidationError("upstream '\(route.upstream)' is not configured")
            }
            let logger = Logger(label: "cscgate.ocsp")
            let context = OperationContext(requestID: "ocsp-check", logger: logger)
            let info = try await Self.describe(route, upstream, context)
            let anchors = try TrustAnchors(configuration: loaded)
            let client = SignerCertificateChecking.makeClient(loaded.gateway.ocsp)
            let policy = SignerCertificatePolicy.resolve(for: route, tenant: tenant, gateway: loaded.gateway)
            let evaluator = OCSPEvaluator(settings: loaded.gateway.ocsp, anchors: anchors, client: client)
            let subject = SignerCertificateSubject(upstream: route.upstream, credentialID: route.id,
                                                   chain: info.cert.certificates ?? [], policy: policy)
            let result = await evaluator.evaluate(subject, now: Date())
            try? await client.shutdown()
            print(Self.report(result, route: route, tenantID: tenantID, policy: policy, enabled: loaded.gateway.ocsp.enabled))
            if !result.verdict.passes { throw ExitCode(1) }
        }

        static func describe(_ route: CredentialRoute, _ upstream: UpstreamConfiguration,
                             _ context: OperationContext) async throws -> CredentialInfo {
            let request = CredentialInfoRequest(credentialID: route.upstreamCredentialID, certificates: .chain)
            if let settings = upstream.pkcs11 {
                let hsm = try PKCS11Backend(name: upstream.name, settings: settings)
                defer { hsm.shutdown() }
                _ = try await hsm.open(context)
                return try await hsm.credentialInfo(request, context)
            }
            let remote = try CSCUpstream(upstream)
            do {
                let info = try await remote.credentialInfo(request, context)
                await remote.shutdown()
                return info
            } catch {
                await remote.shutdown()
                throw error
            }
        }

        static func report(_ r: SignerCertificateEvaluation, route: CredentialRoute, tenantID: String,
                           policy: SignerCertificatePolicy, enabled: Bool) -> String {
            func stamp(_ d: Date?) -> String { d.map { ISO8601DateFormatter().string(from: $0) } ?? "-" }
            let v = r.verdict
            var lines = [
                "credential:    \(tenantID)/\(route.id) (upstream \(route.upstream), \(route.upstreamCredentialID))",
                "status:        \(v.status.rawValue)" + (v.softFailed ? " (soft-fail: signing allowed)" : "")
                    + (v.passes ? "" : " (refused)"),
                "detail:        \(v.detail)",
                "policy:        failureMode \(policy.failureMode.rawValue), keyUsage \(policy.keyUsage.rawValue)"
                    + (enabled ? "" : " (ocsp.enabled is off: serve does not check)"),
                "issuer:        \(r.issuer ?? "-")",
                "fingerprint:   sha-256 \(r.fingerprint ?? "-")",
                "responder:     \(r.responderURL ?? "-")" + (r.method.map { " (\($0))" } ?? ""),
            ]
            if let resp = r.response {
                lines.append("responder id:  \(resp.responder)")
                lines.append("signed by:     " + (resp.certificateSubjects.first.map { "\($0) (delegated responder)" }
                    ?? "the issuing CA"))
                lines.append("producedAt:    \(stamp(resp.producedAt))")
                if let single = resp.responses.first {
                    lines.append("thisUpdate:    \(stamp(single.thisUpdate))")
                    lines.append("nextUpdate:    \(stamp(single.nextUpdate))")
                }
                lines.append("nonce echoed:  \(resp.hasNonce ? "yes" : "no")")
            }
            if let der = r.responseDER { lines.append("evidence:      \(EvidenceAddress.of(der)) (sha-256 of the response)") }
            lines.append("path:          " + (r.path.isEmpty ? "-" : r.path.joined(separator: "\n               -> ")))
            if v.passes { lines.append("valid until:   \(stamp(v.validUntil)) (cache)") }
            return lines.joined(separator: "\n")
        }
    }
}
