import CSC
import Foundation
@testable import GatewayCore
import Logging
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
}
