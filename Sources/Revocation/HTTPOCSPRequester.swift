import AsyncHTTPClient
import Foundation
import GatewayCore
import NIOCore
import NIOHTTP1
import Synchronization
import X509

/// What one responder exchange gave, kept for the verdict and the evidence: swift-certificates
/// consumes the bytes but does not hand them back.
final class OCSPExchange: Sendable {
    struct State {
        var url: String?
        var method: String?
        var response: [UInt8]?
        var failure: String?
    }

    let state = Mutex(State())
    var snapshot: State { state.withLock { $0 } }
}

/// Sends `OCSPVerifierPolicy`'s request over AsyncHTTPClient: RFC 5019 GET when the encoded
/// request is small enough, POST otherwise (or when the responder refuses GET). Network
/// failures are terminal, so that the gateway, not the library, applies hard- or soft-fail.
struct HTTPOCSPRequester: OCSPRequester {
    let client: HTTPClient
    /// Replaces the certificate's AIA URL (per-CA override).
    let overrideURL: String?
    let timeout: Double
    let useGET: Bool
    let getMaxBytes: Int
    let postOnly: PostOnlyResponders
    let exchange: OCSPExchange

    static let maxResponseBytes = 256 * 1024

    func query(request: [UInt8], uri: String) async -> OCSPRequesterQueryResult {
        let url = overrideURL ?? uri
        exchange.state.withLock { $0.url = url }
        do {
            var bytes: [UInt8]?
            if useGET, !postOnly.contains(url), let getURL = Self.getURL(url, request: request, maxBytes: getMaxBytes) {
                exchange.state.withLock { $0.method = "GET" }
                bytes = try await send(getURL, body: nil)
                if bytes == nil { postOnly.insert(url) }
            }
            if bytes == nil {
                exchange.state.withLock { $0.method = "POST" }
                bytes = try await send(url, body: request)
            }
            guard let bytes else { throw OCSPTransportError("responder refused the request") }
            exchange.state.withLock { $0.response = bytes }
            return .response(bytes)
        } catch {
            let text = Self.describe(error, timeout: timeout)
            exchange.state.withLock { $0.failure = "responder \(url) \(text)" }
            return .terminalError(OCSPTransportError(text))
        }
    }

    /// nil when the responder answers GET with 404/405/501: it speaks POST only.
    private func send(_ url: String, body: [UInt8]?) async throws -> [UInt8]? {
        var request = HTTPClientRequest(url: url)
        if let body {
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/ocsp-request")
            request.body = .bytes(ByteBuffer(bytes: body))
        } else {
            request.method = .GET
        }
        request.headers.add(name: "Accept", value: "application/ocsp-response")
        let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
        if body == nil, [404, 405, 501].contains(response.status.code) { return nil }
        guard response.status == .ok else { throw OCSPTransportError("answered HTTP \(response.status.code)") }
        let buffer = try await response.body.collect(upTo: Self.maxResponseBytes)
        return Array(buffer.readableBytesView)
    }

    /// RFC 5019 §5: base64 of the DER request, URL-encoded, appended to the responder URL.
    static func getURL(_ base: String, request: [UInt8], maxBytes: Int) -> String? {
        let encoded = Data(request).base64EncodedString()
            .replacingOccurrences(of: "+", with: "%2B").replacingOccurrences(of: "/", with: "%2F")
            .replacingOccurrences(of: "=", with: "%3D")
        guard encoded.utf8.count <= maxBytes else { return nil }
        return (base.hasSuffix("/") ? base : base + "/") + encoded
    }

    static func describe(_ error: Error, timeout: Double) -> String {
        if let e = error as? OCSPTransportError { return e.description }
        if let e = error as? HTTPClientError {
            if e == .deadlineExceeded || e == .readTimeout || e == .connectTimeout {
                return "did not answer within \(timeout) s"
            }
            return "is unreachable (\(e))"
        }
        if error is CancellationError { return "did not answer within \(timeout) s" }
        let text = "\(error)"
        if text.localizedCaseInsensitiveContains("refused") { return "is unreachable (connection refused)" }
        return "is unreachable (\(text.prefix(120)))"
    }
}

struct OCSPTransportError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Responders that answered GET with "not supported": asked with POST from then on.
final class PostOnlyResponders: Sendable {
    private let urls = Mutex(Set<String>())
    func contains(_ url: String) -> Bool { urls.withLock { $0.contains(url) } }
    func insert(_ url: String) { _ = urls.withLock { $0.insert(url) } }
}
