import CSC
import Foundation

/// Whose usage a reader may see. The one place that decides it, for the admin API, the tenant
/// endpoint and the command line alike: an operator sees every tenant; a tenant sees itself
/// and, if it is a reseller, the tenants sold through it (its `parent` descendants), never
/// another reseller's.
public struct UsageScope: Sendable, Equatable {
    public enum Reader: Sendable, Equatable {
        case `operator`(String)
        case tenant(String)
    }

    public let reader: Reader
    /// Tenant id → the tenants whose `parent` it is.
    private let children: [String: [String]]
    /// Every tenant id the reader may name (for an operator: all known ones).
    public let visible: Set<String>

    /// `known` adds tenants an operator may name beyond the configured ones (e.g. tenants
    /// that have left the configuration but still have a ledger history).
    public init(reader: Reader, tenants: [TenantConfiguration], known: Set<String> = []) {
        var children = [String: [String]]()
        for t in tenants { if let p = t.parent { children[p, default: []].append(t.id) } }
        for k in children.keys { children[k]?.sort() }
        self.reader = reader
        self.children = children
        switch reader {
        case .operator:
            visible = Set(tenants.map(\.id)).union(known)
        case .tenant(let id):
            visible = Set([id]).union(Self.descendants(of: id, children))
        }
    }

    /// The tenants a request covers, first the one named (or the reader's own), then its
    /// sub-tenants when asked, sorted. An unknown tenant and one outside the scope get the
    /// same answer, so a reseller cannot probe for another reseller's tenants.
    public func tenants(named requested: String?, includeSubtenants: Bool) throws(CSCError) -> [String] {
        let root: String
        if let requested {
            guard visible.contains(requested) else {
                throw CSCError(status: 404, error: "invalid_request",
                               description: "Unknown tenant '\(Self.printable(requested))'")
            }
            root = requested
        } else if case .tenant(let own) = reader {
            root = own
        } else {
            throw CSCError.invalidRequest("Missing parameter tenant")
        }
        guard includeSubtenants else { return [root] }
        return [root] + Self.descendants(of: root, children).sorted().filter(visible.contains)
    }

    /// Operators may list every tenant at once; tenants only what `tenants(named:)` returns.
    public var isOperator: Bool {
        if case .operator = reader { return true }
        return false
    }

    static func descendants(of id: String, _ children: [String: [String]]) -> Set<String> {
        var out = Set<String>(), queue = children[id] ?? []
        // Cycles are refused when tenants load; the visited set keeps this finite regardless.
        while let next = queue.popLast() {
            guard next != id, out.insert(next).inserted else { continue }
            queue += children[next] ?? []
        }
        return out
    }

    /// Echoes a tenant name into an error safely: short, printable ASCII.
    public static func printable(_ s: String) -> String {
        String(s.prefix(64).map { $0.isASCII && !$0.isNewline && ($0.asciiValue ?? 0) >= 0x20 ? $0 : "?" })
    }
}
