import CSC
import Foundation
import GatewayCore
import HTTPTypes

/// One call to `/admin/v1/`, after the operator has been authenticated.
public struct AdminRequest: Sendable {
    public var method: HTTPRequest.Method
    /// The path below `/admin/v1/`, e.g. `usage`.
    public var path: String
    public var query: [String: String]
    public var body: Data
    public var operatorID: String
    public var context: OperationContext
}

public typealias AdminHandler = @Sendable (AdminRequest) async -> FrontDoorResponse

/// The operator side of the gateway: usage, reports, reload, limits. Each capability adds its
/// routes here; authentication happens once, before any of them runs.
public struct AdminAPI: Sendable {
    public static let prefix = "/admin/v1/"

    let authentication: AdminAuthentication
    private var routes: [String: AdminHandler] = [:]

    public init(operators: [AdminConfiguration]) {
        self.authentication = AdminAuthentication(operators: operators)
    }

    public mutating func add(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping AdminHandler) {
        routes["\(method.rawValue) \(path)"] = handler
    }

    func handle(method: HTTPRequest.Method, path: String, query: [String: String], authorization: String?, body: Data,
                context: OperationContext) async -> FrontDoorResponse {
        let operatorID: String
        do {
            operatorID = try authentication.authenticate(authorization: authorization)
        } catch {
            return FrontDoorResponse(error)
        }
        guard let handler = routes["\(method.rawValue) \(path)"] else {
            let allowed = routes.keys.filter { $0.hasSuffix(" " + path) }.map { String($0.prefix { $0 != " " }) }.sorted()
            if !allowed.isEmpty {
                return FrontDoorResponse(CSCError(status: 405, error: "invalid_request",
                                                  description: "/admin/v1/\(path) accepts \(allowed.joined(separator: ", "))",
                                                  headers: ["Allow": allowed.joined(separator: ", ")]))
            }
            return FrontDoorResponse(CSCError(status: 404, error: "invalid_request",
                                              description: "No admin resource /admin/v1/\(path.prefix(80))"))
        }
        context.logger.info("admin call", metadata: ["operator": .string(operatorID), "resource": .string(path)])
        return await handler(AdminRequest(method: method, path: path, query: query, body: body, operatorID: operatorID,
                                          context: context))
    }

    /// Query parameters as the admin API reads them: the last value of a repeated name wins.
    static func query(_ uri: String) -> [String: String] {
        guard let q = URLComponents(string: uri)?.queryItems else { return [:] }
        var out = [String: String]()
        for item in q { out[item.name] = item.value ?? "" }
        return out
    }
}
