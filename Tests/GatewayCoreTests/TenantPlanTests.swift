import Foundation
@testable import GatewayCore
import Testing

// Plans, resellers and policy attachments in tenant files: what billing and policy read.

@Suite("Tenant plans, parents and policy attachments")
struct TenantPlanTests {
    private func acme(adding extra: String) -> String { ConfigFolder.validAcme + "\n" + extra }

    @Test("a full plan loads with exact decimal prices")
    func fullPlan() throws {
        var folder = try ConfigFolder()
        folder.policies["business-hours.yaml"] = "default: allow\n"
        folder.tenants["acme.yaml"] = acme(adding: """
            plan:
              currency: EUR
              monthlyFee: 49.90
              includedSignatures: 1000
              pricePerSignature: 0
              overagePrice: "0.045"
              monthlyQuota: 5000
              quotaThresholds: [95, 80, 80]
            policies: [business-hours]
            """)
        let tenant = try #require(try folder.load().tenants.first { $0.id == "acme" })
        let plan = try #require(tenant.plan)
        #expect(plan.currency == "EUR")
        #expect(plan.monthlyFee == Decimal(string: "49.90"))
        #expect(plan.includedSignatures == 1000)
        #expect(plan.pricePerSignature == 0)
        #expect(plan.overagePrice == Decimal(string: "0.045"))
        #expect(plan.monthlyQuota == 5000)
        #expect(plan.quotaThresholds == [80, 95])
        #expect(tenant.policies == ["business-hours"])
    }

    @Test("overage defaults to the price per signature, and thresholds to 80 and 95")
    func planDefaults() throws {
        var folder = try ConfigFolder()
        folder.tenants["acme.yaml"] = acme(adding: "plan:\n  currency: CHF\n  pricePerSignature: 0.10\n")
        let plan = try #require(try folder.load().tenants.first?.plan)
        #expect(plan.overagePrice == Decimal(string: "0.10"))
        #expect(plan.quotaThresholds == [80, 95])
        #expect(plan.monthlyQuota == nil)
    }

    @Test("bad plan values name file and line", arguments: [
        ("currency: euro", "ISO 4217"),
        ("pricePerSignature: -1", "non-negative decimal"),
        ("pricePerSignature: 0.0000001", "at most 6 decimals"),
        ("monthlyQuota: 0", "'plan.monthlyQuota' must be an integer"),
        ("quotaThresholds: [80, 120]", "'plan.quotaThresholds[1]' must be a percentage"),
        ("discount: 5", "unknown key 'plan.discount'"),
    ])
    func badPlan(_ line: String, _ message: String) throws {
        var folder = try ConfigFolder()
        let currency = line.hasPrefix("currency") ? "" : "  currency: EUR\n"
        let text = acme(adding: "plan:\n\(currency)  \(line)\n")
        folder.tenants["acme.yaml"] = text
        let lineNumber = text.components(separatedBy: "\n").firstIndex { $0.contains(line.components(separatedBy: ":")[0] + ":") }.map { $0 + 1 }
        try folder.expectIssue(message, file: folder.tenantFile("acme.yaml"), line: lineNumber)
    }

    @Test("credential labels and client and credential policies are read")
    func labelsAndPolicies() throws {
        var folder = try ConfigFolder()
        folder.policies = ["qualified-only.yaml": "default: allow\n", "app-limits.yaml": "default: allow\n"]
        folder.tenants["acme.yaml"] = ConfigFolder.validAcme
            .replacingOccurrences(of: "    description: RSA at vendor A", with: """
                    description: RSA at vendor A
                    labels:
                      country: DE
                      tier: qualified
                    policies: [qualified-only]
                """)
            .replacingOccurrences(of: "    name: ACME signing app", with: "    name: ACME signing app\n    policies: [app-limits]")
        let tenant = try #require(try folder.load().tenants.first)
        #expect(tenant.credentials[0].labels == ["country": "DE", "tier": "qualified"])
        #expect(tenant.credentials[0].policies == ["qualified-only"])
        #expect(tenant.clients[0].policies == ["app-limits"])
    }

    @Test("a reseller parent loads; an unknown parent and a cycle are refused with file and line")
    func parents() throws {
        var folder = try ConfigFolder()
        let reseller = "tenant: reseller\n"
        folder.tenants["reseller.yaml"] = reseller
        folder.tenants["acme.yaml"] = acme(adding: "parent: reseller")
        let loaded = try folder.load()
        #expect(loaded.tenants.first { $0.id == "acme" }?.parent == "reseller")

        folder.tenants["acme.yaml"] = acme(adding: "parent: nobody")
        try folder.expectIssue("parent tenant 'nobody' is not defined", file: folder.tenantFile("acme.yaml"), line: nil)

        folder.tenants["acme.yaml"] = acme(adding: "parent: reseller")
        folder.tenants["reseller.yaml"] = reseller + "parent: acme\n"
        try folder.expectIssue("tenant 'acme' is its own ancestor", file: folder.tenantFile("acme.yaml"), line: nil)
    }
}
