#if canImport(Glibc)
import Glibc
#endif
import ConnectorPolicy
import CoreMetrics
import Prometheus
import Synchronization

// The worker's instruments (`run --metrics`, docs/metrics.md). They are swift-metrics handles
// made by swift-prometheus' factory over a registry of our own (no global bootstrap: nothing
// else in the process should report into it), and MetricsServer serves that registry's text.
//
// Cost on the milter's path: one atomic add per counter, one short lock per histogram
// observation, one dictionary lookup under a lock to find a decision's counter. Nothing here
// waits for a scrape. Labels come only from bounded sets: the policy's connector names, the
// verdicts, reasons and modes, the map names. Never a client address or a recipient.

/// Everything the worker counts, and its exposition.
package final class WorkerMetrics: Sendable {
    /// How the decision counters are found without a lock on their registry.
    private struct DecisionKey: Hashable {
        let inbound: String
        let verdict: Verdict
        let would: Verdict?
        let reason: RefusalReason?
        let mode: Mode
    }

    /// A socketmap reply's first word.
    package enum LookupResult: String, CaseIterable, Sendable {
        case ok, notfound, temp, timeout, perm
    }

    /// Judging takes microseconds (bench: policy-bench); the upper buckets catch a stall.
    static let judgingBuckets: [Duration] = [
        .microseconds(5), .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100),
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100),
    ]

    package let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let openSessions: @Sendable () -> Int

    private let decisions = Mutex<[DecisionKey: (decided: CoreMetrics.Counter, would: CoreMetrics.Counter?)]>([:])
    private let sessionsTotal: CoreMetrics.Counter
    private let sessionsOpen: CoreMetrics.Gauge
    private let judging: CoreMetrics.Timer
    private let reloadsApplied: CoreMetrics.Counter
    private let reloadsRefused: CoreMetrics.Counter
    private let policyGeneration: CoreMetrics.Gauge
    private let policyConnectors: CoreMetrics.Gauge
    private let policyLoadedAt: CoreMetrics.Gauge
    private let policyLoadDuration: CoreMetrics.Gauge
    private let generation = Atomic<Int>(0)
    /// Every map and result made up front, so a lookup finds its counter without a lock and
    /// every series exists (at 0) from the first scrape. `nil`: a name that is no map of ours.
    private let lookups: [OutboundMapName?: [LookupResult: CoreMetrics.Counter]]

    /// `workerRestarts`: the supervisor's count of workers that died before this one, passed at
    /// spawn (only the supervisor outlives a worker). `openSessions` is read at each scrape.
    package init(workerRestarts: Int, openSessions: @escaping @Sendable () -> Int) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["connector_milter_judging_duration_seconds"] = Self.judgingBuckets
        self.registry = registry
        self.factory = factory
        self.openSessions = openSessions

        sessionsTotal = CoreMetrics.Counter(label: "connector_milter_sessions_total", factory: factory)
        sessionsOpen = CoreMetrics.Gauge(label: "connector_milter_sessions_open", factory: factory)
        judging = CoreMetrics.Timer(label: "connector_milter_judging_duration_seconds", factory: factory)
        reloadsApplied = CoreMetrics.Counter(label: "connector_milter_policy_reloads_total",
                                             dimensions: [("result", "applied")], factory: factory)
        reloadsRefused = CoreMetrics.Counter(label: "connector_milter_policy_reloads_total",
                                             dimensions: [("result", "refused")], factory: factory)
        policyGeneration = CoreMetrics.Gauge(label: "connector_milter_policy_generation", factory: factory)
        policyConnectors = CoreMetrics.Gauge(label: "connector_milter_policy_connectors", factory: factory)
        policyLoadedAt = CoreMetrics.Gauge(label: "connector_milter_policy_loaded_timestamp_seconds", factory: factory)
        policyLoadDuration = CoreMetrics.Gauge(label: "connector_milter_policy_load_duration_seconds", factory: factory)
        let restarts = CoreMetrics.Counter(label: "connector_milter_worker_restarts_total", factory: factory)
        if workerRestarts > 0 { restarts.increment(by: workerRestarts) }
        CoreMetrics.Gauge(label: "connector_milter_worker_start_time_seconds", factory: factory).record(Self.wallClock())

        var lookups: [OutboundMapName?: [LookupResult: CoreMetrics.Counter]] = [:]
        for map in OutboundMapName.allCases.map(Optional.some) + [nil] {
            // A name that is no map of ours is always answered PERM.
            for result in map == nil ? [.perm] : LookupResult.allCases {
                lookups[map, default: [:]][result] = CoreMetrics.Counter(
                    label: "connector_milter_socketmap_lookups_total",
                    dimensions: [("map", map?.rawValue ?? "unknown"), ("result", result.rawValue)], factory: factory)
            }
        }
        self.lookups = lookups
    }

    // MARK: - Sessions and decisions (the milter's threads)

    func sessionOpened() { sessionsTotal.increment() }

    /// A monotonic instant, for `judged(since:)`.
    @inline(__always)
    func startJudging() -> UInt64 { Self.monotonicNanoseconds() }

    @inline(__always)
    func judged(since start: UInt64) {
        judging.recordNanoseconds(Int64(truncatingIfNeeded: Self.monotonicNanoseconds() &- start))
    }

    /// One verdict line's decision: counted where the line is written, so a scrape and
    /// `connector-milter report` over the same time agree.
    func decided(_ decision: Decision) {
        let key = DecisionKey(inbound: decision.inbound?.name ?? "none", verdict: decision.verdict,
                              would: decision.wouldBe, reason: decision.refusal?.reason, mode: decision.mode)
        let counters = decisions.withLock { cache in
            if let found = cache[key] { return found }
            // Both counters of a key are made once; the registry returns the same series to
            // every later maker anyway, so two threads racing here only duplicate a handle.
            let made = makeDecisionCounters(key)
            cache[key] = made
            return made
        }
        counters.decided.increment()
        counters.would?.increment()
    }

    private func makeDecisionCounters(_ key: DecisionKey) -> (decided: CoreMetrics.Counter, would: CoreMetrics.Counter?) {
        let reason = key.reason?.rawValue ?? "none"
        let decided = CoreMetrics.Counter(
            label: "connector_milter_decisions_total",
            dimensions: [("inbound", key.inbound), ("verdict", key.verdict.rawValue), ("reason", reason),
                         ("mode", key.mode.rawValue)],
            factory: factory)
        let would = key.would.map {
            CoreMetrics.Counter(label: "connector_milter_would_decisions_total",
                                dimensions: [("inbound", key.inbound), ("would", $0.rawValue), ("reason", reason)],
                                factory: factory)
        }
        return (decided, would)
    }

    // MARK: - Policy (the reload thread)

    /// The policy in force changed (the first load counts as generation 1).
    func policyLoaded(connectors: Int, seconds: Double, isReload: Bool) {
        if isReload { reloadsApplied.increment() }
        policyGeneration.record(generation.add(1, ordering: .relaxed).newValue)
        policyConnectors.record(connectors)
        policyLoadedAt.record(Self.wallClock())
        policyLoadDuration.record(seconds)
    }

    func reloadRefused() { reloadsRefused.increment() }

    // MARK: - Socketmap (the maps thread)

    /// One answered socketmap request: its map from the request, its result from the reply.
    func socketmapLookup(request: [UInt8], reply: String) {
        let name = request.firstIndex(of: UInt8(ascii: " ")).map { String(decoding: request[..<$0], as: UTF8.self) }
        let map = name.flatMap(OutboundMapName.init(rawValue:))
        let word = reply.prefix { $0 != " " }.lowercased()
        let result = LookupResult(rawValue: word) ?? .perm
        lookups[map]?[result]?.increment()
    }

    // MARK: - Exposition (the metrics thread)

    /// The Prometheus text exposition of everything above.
    package func exposition() -> [UInt8] {
        sessionsOpen.record(openSessions())
        return registry.emitToBuffer()
    }

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    // MARK: - Clocks

    @inline(__always)
    static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    static func wallClock() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
