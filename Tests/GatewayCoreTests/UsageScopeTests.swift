import CSC
import Foundation
@testable import GatewayCore
import Testing

// Who may read whose usage: the one rule behind the admin API, the tenant endpoint and the CLI.

@Suite("Usage scope: operators, tenants and resellers")
struct UsageScopeTests {
    static func tenant(_ id: String, parent: String? = nil) -> TenantConfiguration {
        TenantConfiguration(id: id, displayName: id, clients: [], credentials: [], timestampUpstream: nil,
                            timestampClientData: nil, parent: parent)
    }

    /// Two resellers with two and one sub-tenants, one sub-sub-tenant, and a direct customer.
    static let tenants = [
        tenant("r1"), tenant("a", parent: "r1"), tenant("b", parent: "r1"), tenant("a1", parent: "a"),
        tenant("r2"), tenant("c", parent: "r2"), tenant("direct"),
    ]

    @Test("a reseller sees itself and every tenant sold through it, in name order")
    func reseller() throws {
        let scope = UsageScope(reader: .tenant("r1"), tenants: Self.tenants)
        #expect(try scope.tenants(named: nil, includeSubtenants: false) == ["r1"])
        #expect(try scope.tenants(named: nil, includeSubtenants: true) == ["r1", "a", "a1", "b"])
        #expect(try scope.tenants(named: "a", includeSubtenants: true) == ["a", "a1"])
        #expect(try scope.tenants(named: "b", includeSubtenants: false) == ["b"])
    }

    @Test("another reseller's tenant is unknown, with the same answer as a tenant that does not exist",
          arguments: ["r2", "c", "direct", "nobody"])
    func otherReseller(_ name: String) throws {
        let scope = UsageScope(reader: .tenant("r1"), tenants: Self.tenants)
        let error = #expect(throws: CSCError.self) { try scope.tenants(named: name, includeSubtenants: false) }
        #expect(error?.status == 404)
        #expect(error?.errorDescription == "Unknown tenant '\(name)'")
    }

    @Test("a sub-tenant does not see its reseller or its siblings")
    func subtenant() throws {
        let scope = UsageScope(reader: .tenant("b"), tenants: Self.tenants)
        #expect(try scope.tenants(named: nil, includeSubtenants: true) == ["b"])
        for other in ["r1", "a", "a1"] {
            #expect(throws: CSCError.self) { try scope.tenants(named: other, includeSubtenants: false) }
        }
    }

    @Test("an operator sees every tenant, ledger-only ones when told, and must name one for sub-tenants")
    func operatorScope() throws {
        let scope = UsageScope(reader: .operator("ops"), tenants: Self.tenants, known: ["gone"])
        #expect(scope.isOperator)
        #expect(try scope.tenants(named: "r2", includeSubtenants: true) == ["r2", "c"])
        #expect(try scope.tenants(named: "gone", includeSubtenants: true) == ["gone"])
        #expect(throws: CSCError.self) { try scope.tenants(named: nil, includeSubtenants: true) }
        #expect(throws: CSCError.self) { try scope.tenants(named: "nobody", includeSubtenants: false) }
    }

    @Test("a tenant name echoed in an error is short and printable")
    func printable() {
        #expect(UsageScope.printable("a\nb\u{7}c") == "a?b?c")
        #expect(UsageScope.printable(String(repeating: "x", count: 200)).count == 64)
    }
}
