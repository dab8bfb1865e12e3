import CSC
import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Hummingbird's basic context plus the peer's address, which `source` policy rules match.
public struct GatewayRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// Routes HTTP requests to the front door. A plain responder instead of a router: the CSC
/// surface is a fixed set of POST paths, and every unknown one must still answer in CSC JSON.
public struct GatewayResponder: HTTPResponder {
    public typealias Context = GatewayRequestContext

    let frontDoor: FrontDoor
    let admin: AdminAPI
    let usage: UsageAPI?
    let maxBodyBytes: Int
    let logger: Logger

    public init(gateway: Gateway, admin: AdminAPI, usage: UsageAPI? = nil, logger: Logger) {
        self.frontDoor = FrontDoor(gateway: gateway)
        self.admin = admin
        self.usage = usage
        self.maxBodyBytes = gateway.configuration.maxBodyBytes
        self.logger = logger
    }

    public func respond(to request: Request, context: GatewayRequestContext) async throws -> Response {
        let started = ContinuousClock.now
        let offered = request.headers[Self.requestIDField]
        let requestID = Self.requestID(offered)
        let operation = OperationContext(requestID: requestID, requestIDFromClient: requestID == offered, logger: logger,
                                         clientAddress: context.remoteAddress?.ipAddress.flatMap { IPAddress($0) })
        var request = request
        let path = request.uri.path
        var answer: FrontDoorResponse

        if path == "/health" && (request.method == .get || request.method == .head) {
            answer = FrontDoorResponse(json: JSONObject(["status": .string("ok")]))
        } else if path.hasPrefix(AdminAPI.prefix) {
            do {
                let buffer = try await request.collectBody(upTo: maxBodyBytes)
                answer = await admin.handle(method: request.method, path: String(path.dropFirst(AdminAPI.prefix.count)),
                                            query: AdminAPI.query(request.uri.description),
                                            authorization: request.headers[.authorization],
                                            body: Data(buffer.readableBytesView), context: operation)
            } catch {
                answer = FrontDoorResponse(.bodyTooLarge(limit: maxBodyBytes))
            }
        } else if path.hasPrefix(UsageAPI.tenantPrefix) {
            if let usage {
                answer = await usage.handleTenant(method: request.method.rawValue,
                                                  path: String(path.dropFirst(UsageAPI.tenantPrefix.count)),
                                                  query: AdminAPI.query(request.uri.description),
                                                  authorization: request.headers[.authorization], context: operation)
            } else {
                answer = FrontDoorResponse(CSCError(status: 404, error: "invalid_request",
                                                    description: "This gateway keeps no usage ledger"))
            }
        } else if request.method != .post {
            answer = FrontDoorResponse(CSCError(status: 405, error: "invalid_request",
                                                description: "CSC methods are called with POST", headers: ["Allow": "POST"]))
        } else {
            do {
                let buffer = try await request.collectBody(upTo: maxBodyBytes)
                let body = Data(buffer.readableBytesView)
                let authorization = request.headers[.authorization]
                answer = await route(path, authorization: authorization, body: body, context: operation)
            } catch {
                answer = FrontDoorResponse(.bodyTooLarge(limit: maxBodyBytes))
            }
        }

        let elapsed = ContinuousClock.now - started
        let ms = Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000
        operation.logger.log(level: answer.status >= 500 ? .warning : .info, "request", metadata: [
            "path": .string(path.prefix(80).description), "status": .stringConvertible(answer.status),
            "ms": .string(String(format: "%.2f", ms)),
        ])

        var headers: HTTPFields = [.contentType: "application/json", Self.requestIDField: requestID]
        for (name, value) in answer.headers { if let field = HTTPField.Name(name) { headers[field] = value } }
        let body = answer.body.map { ResponseBody(byteBuffer: ByteBuffer(bytes: $0)) } ?? ResponseBody()
        if answer.body == nil { headers[.contentType] = nil }
        return Response(status: .init(code: answer.status), headers: headers, body: body)
    }

    private func route(_ path: String, authorization: String?, body: Data, context: OperationContext) async -> FrontDoorResponse {
        for version in CSCVersion.allCases {
            let prefix = "/csc/\(version.rawValue)/"
            if path.hasPrefix(prefix) {
                let method = String(path.dropFirst(prefix.count))
                if method.hasPrefix("oauth2/") {
                    return await frontDoor.handleOAuth(path: String(method.dropFirst(7)), authorization: authorization,
                                                       body: body, context: context)
                }
                return await frontDoor.handle(version: version, path: method, authorization: authorization, body: body,
                                              context: context)
            }
        }
        if path.hasPrefix("/oauth2/") {
            return await frontDoor.handleOAuth(path: String(path.dropFirst(8)), authorization: authorization, body: body,
                                               context: context)
        }
        return FrontDoorResponse(.unknownMethod(String(path.prefix(120))))
    }

    static let requestIDField: HTTPField.Name = {
        guard let name = HTTPField.Name("X-Request-ID") else { preconditionFailure("X-Request-ID is a valid field name") }
        return name
    }()

    /// A client's request id is kept if it is short and plain, so it can be quoted in support tickets.
    static func requestID(_ offered: String?) -> String {
        if let offered, (1...64).contains(offered.count),
           offered.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }) {
            return offered
        }
        return madeRequestID()
    }

    /// A version-4 UUID from the system generator (`getrandom`): Foundation's `UUID()` opens,
    /// reads and closes /dev/urandom on every call here, three system calls per request.
    static func madeRequestID() -> String {
        var generator = SystemRandomNumberGenerator()
        let high: UInt64 = (generator.next() & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000
        let low: UInt64 = (generator.next() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        var digits: [UInt8] = []
        digits.reserveCapacity(36)
        for (i, word) in [high, low].enumerated() {
            for shift in stride(from: 60, through: 0, by: -4) {
                let position = i * 16 + (60 - shift) / 4
                if position == 8 || position == 12 || position == 16 || position == 20 { digits.append(UInt8(ascii: "-")) }
                digits.append(Self.hexDigits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
        return String(decoding: digits, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}

/// Builds the Hummingbird application around a gateway.
public enum GatewayApplication {
    /// With `usage`, its routes are added to the admin API and `/tenant/v1/` is served.
    public static func make(gateway: Gateway, admin: AdminAPI? = nil, usage: UsageAPI? = nil,
                            logger: Logger) -> some ApplicationProtocol {
        let config = gateway.configuration
        var admin = admin ?? AdminAPI(operators: config.admins)
        usage?.register(on: &admin)
        return Application(
            responder: GatewayResponder(gateway: gateway, admin: admin, usage: usage, logger: logger),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "cscgate"),
            logger: logger)
    }
}
