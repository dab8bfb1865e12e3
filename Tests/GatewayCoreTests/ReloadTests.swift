import CSC
import Foundation
@testable import GatewayCore
import Logging
import Synchronization
import Testing

// Reload: a valid change swaps tenants and policies at once; an invalid one is refused whole.

@Suite("Configuration reload")
struct ReloadTests {
    @Test("a valid change applies; an invalid one is refused with its issues and the running snapshot stays")
    func reload() throws {
        var folder = try ConfigFolder()
        folder.policies["rules.yaml"] = "default: allow\nrules:\n  - {id: a, effect: allow}\n"
        folder.tenants["acme.yaml"] = ConfigFolder.validAcme + "\npolicies: [rules]\n"
        let loaded = try folder.load()
        let gateway = Gateway(configuration: loaded, backends: [:], seal: .randomKey())
        let reload = ConfigurationReload(gatewayFile: folder.gatewayFile, gateway: gateway)
        let logger = Logger(label: "reload-test")
        let signHash = OperationFacts(tenant: "acme", client: "acme-app", operation: "signatures/signHash", credential: "acme-ec")
        #expect(gateway.snapshot.policies.decide(signHash).isAllowed)

        try folder.dir.write("policies/rules.yaml", "default: deny\nrules: []\n")
        let applied = reload.reload(trigger: "test", logger: logger)
        #expect(applied.applied && applied.policies == 1 && applied.tenants == 1)
        #expect(!gateway.snapshot.policies.decide(signHash).isAllowed)

        let before = gateway.snapshot.loadedAt
        try folder.dir.write("policies/rules.yaml", "default: deny\nrules:\n  - {id: a, effect: allow, colour: red}\n")
        try folder.dir.write("tenants/acme.yaml", ConfigFolder.validAcme.replacingOccurrences(of: "acme-ec", with: "acme-ec2")
                             + "\npolicies: [rules]\n")
        let refused = reload.reload(trigger: "test", logger: logger)
        #expect(!refused.applied)
        #expect(refused.issues.contains { $0.file.hasSuffix("policies/rules.yaml") && $0.line == 3 })
        #expect(gateway.snapshot.loadedAt == before, "the running snapshot stays")
        #expect((try? gateway.directory.route(tenant: "acme", credentialID: "acme-ec")) != nil)
        #expect(reload.lastOutcome?.applied == false)
    }

    @Test("the revocation checker takes up each reload first; when it cannot (an anchor file is unreadable), nothing changes")
    func revocationCheckerRefuses() throws {
        var folder = try ConfigFolder()
        let loaded = try folder.load()
        let checker = AnchorReloads()
        let gateway = Gateway(configuration: loaded, backends: [:], seal: .randomKey(), revocation: checker)
        let reload = ConfigurationReload(gatewayFile: folder.gatewayFile, gateway: gateway)
        let logger = Logger(label: "reload-test")
        folder.tenants["acme.yaml"] = ConfigFolder.validAcme.replacingOccurrences(of: "acme-ec", with: "acme-ec2")
        try folder.dir.write("tenants/acme.yaml", folder.tenants["acme.yaml"]!)

        checker.failing.withLock { $0 = true }
        let before = gateway.snapshot.loadedAt
        let refused = reload.reload(trigger: "test", logger: logger)
        #expect(!refused.applied && refused.issues.contains { $0.message.contains("anchor file unreadable") })
        #expect(gateway.snapshot.loadedAt == before)

        checker.failing.withLock { $0 = false }
        #expect(reload.reload(trigger: "test", logger: logger).applied)
        #expect(checker.seen.withLock { $0 } == [["acme-ec2", "acme-rsa"]])
        #expect((try? gateway.directory.route(tenant: "acme", credentialID: "acme-ec2")) != nil)
    }
}

/// Records the configurations handed to it; fails on demand as an unreadable anchor file would.
private final class AnchorReloads: RevocationChecker {
    let failing = Mutex(false)
    let seen = Mutex<[[String]]>([])
    func verdict(for subject: SignerCertificateSubject, _ context: OperationContext) async -> SignerCertificateVerdict {
        SignerCertificateVerdict(status: .good, detail: "", validUntil: Date())
    }
    func reload(_ configuration: LoadedConfiguration) throws {
        struct Unreadable: Error, CustomStringConvertible { var description: String { "anchor file unreadable" } }
        if failing.withLock({ $0 }) { throw Unreadable() }
        seen.withLock { $0.append(configuration.tenants.flatMap { $0.credentials.map(\.id) }.sorted()) }
    }
}
