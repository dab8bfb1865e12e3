import NIOCore
import NIOHTTP1

/// One request on one upstream connection and the promise of its whole answer.
struct UpstreamExchange: Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer
    let deadline: NIODeadline
    let maxResponseBytes: Int
    let promise: EventLoopPromise<UpstreamHTTPResponse>
}

/// What an upstream answered, read whole.
struct UpstreamHTTPResponse: Sendable {
    let status: UInt
    let body: ByteBuffer
    /// The connection may carry another request (HTTP/1.1 keep-alive, no `Connection: close`).
    let keepAlive: Bool
}

/// Why an exchange with an upstream did not produce an answer.
enum UpstreamHTTPError: Error, Equatable {
    case connectTimeout
    case connectionRefused
    case connectFailed
    case deadlineExceeded
    /// The upstream closed the connection before its answer was complete.
    case closed
    case responseTooLarge(Int)
    case malformedResponse
    case shutDown
}

/// Runs one exchange at a time on its connection: head, body and end of the request leave in
/// one flush (one TCP segment for a signHash), and the answer is gathered up to a size limit.
/// The pool hands a connection to one caller at a time, so a second exchange never overlaps.
final class UpstreamExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = UpstreamExchange
    typealias OutboundOut = HTTPClientRequestPart

    private var exchange: UpstreamExchange?
    private var status: UInt = 0
    private var keepAlive = true
    private var body: ByteBuffer?
    private var timer: Scheduled<Void>?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let next = unwrapOutboundIn(data)
        guard exchange == nil else {
            // The pool never does this; refuse rather than interleave two answers.
            next.promise.fail(UpstreamHTTPError.closed)
            promise?.fail(UpstreamHTTPError.closed)
            return
        }
        exchange = next
        status = 0
        keepAlive = true
        body = nil
        let loop = context.eventLoop.assumeIsolated()
        timer = loop.scheduleTask(deadline: next.deadline) { [weak self] in
            self?.finish(.failure(UpstreamHTTPError.deadlineExceeded))
            context.close(promise: nil)
        }
        context.write(wrapOutboundOut(.head(next.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(next.body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let current = exchange else {
            // An answer nobody asked for: the connection is out of step, so it goes.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status.code
            keepAlive = head.isKeepAlive
        case .body(var part):
            let size = (body?.readableBytes ?? 0) + part.readableBytes
            guard size <= current.maxResponseBytes else {
                finish(.failure(UpstreamHTTPError.responseTooLarge(current.maxResponseBytes)))
                context.close(promise: nil)
                return
            }
            if body == nil { body = part } else { body?.writeBuffer(&part) }
        case .end:
            finish(.success(UpstreamHTTPResponse(status: status, body: body ?? ByteBuffer(), keepAlive: keepAlive)))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(UpstreamHTTPError.closed))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(.failure(error is HTTPParserError ? UpstreamHTTPError.malformedResponse : error))
        context.close(promise: nil)
    }

    private func finish(_ result: Result<UpstreamHTTPResponse, Error>) {
        guard let current = exchange else { return }
        exchange = nil
        body = nil
        timer?.cancel()
        timer = nil
        current.promise.completeWith(result)
    }
}
