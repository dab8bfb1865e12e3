import ArgumentParser
import Foundation
import GatewayCore
import Logging

/// `cscgate policy bench` (hidden): the in-process cost of one decision — policy evaluation
/// plus limit and quota checks on the in-memory counters — over a generated configuration of
/// many tenants, credentials and rules, loaded through the real loader. Prints one JSON object.
struct PolicyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure the cost of one policy and limits decision.", shouldDisplay: false)

    @Option(help: "Tenants.") var tenants: Int = 1000
    @Option(help: "Credentials per tenant.") var credentials: Int = 10
    @Option(help: "Decisions to time.") var decisions: Int = 200_000

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-policy-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try write(dir)
        let loadStarted = ContinuousClock.now
        let loaded = try ConfigurationLoader.load(gatewayFile: dir.appendingPathComponent("gateway.yaml").path)
        let index = PolicyIndex(documents: loaded.policies, tenants: loaded.tenants)
        let loadSeconds = Self.seconds(ContinuousClock.now - loadStarted)
        let limits = Limits()
        let context = OperationContext(requestID: "bench", logger: Logger(label: "cscgate.bench"))
        let byID = Dictionary(loaded.tenants.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let source = IPAddress("192.0.2.10")
        var rng = SystemRandomNumberGenerator()

        func one(_ i: Int) async throws -> (Duration, Bool) {
            let t = loaded.tenants[Int.random(in: 0..<loaded.tenants.count, using: &rng)]
            let route = t.credentials[Int.random(in: 0..<t.credentials.count, using: &rng)]
            let started = ContinuousClock.now
            let facts = OperationFacts(
                tenant: t.id, client: t.clients[0].id, operation: "signatures/signHash", credential: route.id,
                credentialLabels: route.labels, upstream: route.upstream, signAlgorithm: "1.2.840.10045.4.3.2",
                hashAlgorithm: "2.16.840.1.101.3.4.2.1", hashes: 1, numSignatures: 1, scal: "1", time: Date(), source: source)
            let decision = index.decide(facts)
            var allowed = decision.isAllowed
            if allowed {
                let tenant = byID[t.id]
                let admission = try await limits.admit(decision.limits, facts: facts, signatures: 1, plan: tenant?.plan,
                                                       failMode: .closed, context)
                admission.finish()
                allowed = true
            }
            return (ContinuousClock.now - started, allowed)
        }

        for i in 0..<min(20_000, decisions) { _ = try await one(i) }
        var samples = [Double]()
        samples.reserveCapacity(decisions)
        var allowedCount = 0
        let started = ContinuousClock.now
        for i in 0..<decisions {
            let (d, ok) = try await one(i)
            samples.append(Self.seconds(d) * 1e6)
            if ok { allowedCount += 1 }
        }
        let total = Self.seconds(ContinuousClock.now - started)
        samples.sort()
        func pct(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        let rules = loaded.policies.reduce(0) { $0 + $1.rules.count }
        let creds = loaded.tenants.reduce(0) { $0 + $1.credentials.count }
        print("""
            {"figure": "policy+limits decision", "tenants": \(loaded.tenants.count), "credentials": \(creds), \
            "rules": \(rules), "decisions": \(decisions), "allowed": \(allowedCount), \
            "median_us": \(String(format: "%.2f", pct(0.5))), "p90_us": \(String(format: "%.2f", pct(0.9))), \
            "p99_us": \(String(format: "%.2f", pct(0.99))), "decisions_per_s": \(Int(Double(decisions) / total)), \
            "load_s": \(String(format: "%.2f", loadSeconds))}
            """)
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// 10 rules per tenant: five denials that do not fire, two allows, two rate limits, and a
    /// time-window denial; every tenant has a plan with a monthly quota.
    func write(_ dir: URL) throws {
        let fm = FileManager.default
        let tenantsDir = dir.appendingPathComponent("tenants"), policiesDir = dir.appendingPathComponent("policies")
        try fm.createDirectory(at: tenantsDir, withIntermediateDirectories: true)
        try fm.createDirectory(at: policiesDir, withIntermediateDirectories: true)
        try Data("""
            tenants: tenants
            policies: policies
            upstreams:
              - {name: vendor-a, baseURL: "http://127.0.0.1:9", version: v1}
              - {name: vendor-b, baseURL: "http://127.0.0.1:9", version: v2}
            """.utf8).write(to: dir.appendingPathComponent("gateway.yaml"))
        let hash = "$scrypt$ln=14,r=8,p=1$X/0YAnQLLUi9e4eC09AtAg==$LgSqL1ATTW+3Uag1RW6GWfbo9uVDp670FyLBD0cv7MI="
        for t in 0..<tenants {
            var credentialLines = ""
            for c in 0..<credentials {
                credentialLines += """
                      - {id: t\(t)-cred-\(c), upstream: vendor-\(c % 2 == 0 ? "a" : "b"), upstreamCredentialID: u\(c), labels: {country: DE, tier: gold}}

                    """
            }
            try Data("""
                tenant: t\(t)
                clients:
                  - {id: t\(t)-app, secretHash: "\(hash)"}
                credentials:
                \(credentialLines)
                plan: {currency: EUR, pricePerSignature: "0.01", monthlyQuota: 1000000000}
                policies: [p\(t)]
                """.utf8).write(to: tenantsDir.appendingPathComponent("t\(t).yaml"))
            try Data("""
                policy: p\(t)
                default: deny
                rules:
                  - {id: no-sha1-rsa, when: {signAlgo: 1.2.840.113549.1.1.5}, effect: deny, reason: SHA-1 is refused}
                  - {id: no-sha1, when: {hashAlgo: 1.3.14.3.2.26}, effect: deny, reason: SHA-1 is refused}
                  - {id: blocked-net, when: {source: [203.0.113.0/24, "2001:db8::/32"]}, effect: deny, reason: blocked network}
                  - {id: big-batches, when: {operation: signatures/signHash, hashes: {min: 101}}, effect: deny, reason: too many}
                  - {id: blocked-label, when: {labels: {blocked: "yes"}}, effect: deny, reason: blocked credential}
                  - {id: own-keys, when: {operation: signatures/signHash, credential: "t\(t)-cred-*"}, effect: allow}
                  - {id: reads, when: {operation: [credentials/list, credentials/info, credentials/authorize]}, effect: allow}
                  - id: per-credential
                    when: {operation: signatures/signHash}
                    effect: limit
                    limit: {scope: credential, unit: signatures, rate: 1000000000, period: 1s}
                  - id: per-tenant
                    effect: limit
                    limit: {scope: tenant, unit: requests, rate: 1000000000, period: 1s}
                  - id: maintenance
                    when: {time: {days: [sun], from: "03:00", to: "03:01", zone: Europe/Berlin}}
                    effect: deny
                    reason: maintenance window
                """.utf8).write(to: policiesDir.appendingPathComponent("p\(t).yaml"))
        }
    }
}
