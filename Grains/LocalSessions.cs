using System.Collections.Concurrent;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>A session's in-memory half: its λ/V (or K/V) cache and its sampler. Derived from the persisted state.</summary>
public sealed class SessionCompute(string session, string model, string? domain, InferenceSession inference, Sampler sampler)
{
    public Guid Handle { get; } = Guid.NewGuid();

    /// <summary>Whose cache this is, and of what model and domain (which a session never changes), for the silo's live view.</summary>
    public string Session { get; } = session;
    public string Model { get; } = model;
    public string? Domain { get; } = domain;

    /// <summary>The tokens this cache's session generates per second now.</summary>
    public TokenRate Rate { get; } = new();
    public InferenceSession Inference { get; } = inference;
    public Sampler Sampler { get; set; } = sampler;

    /// <summary>The context shards holding this session's oldest positions, once it outgrew its budget.</summary>
    public ContextShards? Shards { get; set; }
}

/// <summary>
/// The silo's live session caches by handle: a fork on the same silo finds its parent's cache by the handle the parent
/// reports and copies it, rather than recompute it; the metrics add up the caches' bytes.
/// </summary>
public sealed class LocalSessions
{
    private readonly ConcurrentDictionary<Guid, SessionCompute> sessions = new();
    private int generating;

    public int Count => sessions.Count;

    /// <summary>Completions under way in this silo's sessions, whoever asked for them: what a draining silo waits for.</summary>
    public int Generating => Volatile.Read(ref generating);

    /// <summary>Counts a completion from now until the returned lease is disposed.</summary>
    public IDisposable BeginGeneration()
    {
        Interlocked.Increment(ref generating);
        return new GenerationLease(this);
    }

    private sealed class GenerationLease(LocalSessions owner) : IDisposable
    {
        private int ended;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref ended, 1) == 0) Interlocked.Decrement(ref owner.generating);
        }
    }
    /// <summary>The tokens this silo's sessions generate per second now.</summary>
    public TokenRate Rate { get; } = new();

    /// <summary>Counts a token a session generated, in its rate and the silo's.</summary>
    public void Generated(SessionCompute compute)
    {
        compute.Rate.Add();
        Rate.Add();
    }

    public long CacheBytes => sessions.Values.Sum(s => s.Inference.Cache.Bytes);
    public long BaselineCacheBytes => sessions.Values.Sum(s => s.Inference.Cache.KeyValueBaselineBytes);

    public IReadOnlyCollection<SessionCompute> All => (IReadOnlyCollection<SessionCompute>)sessions.Values;

    public void Add(SessionCompute compute) => sessions[compute.Handle] = compute;
    public void Remove(SessionCompute compute) => sessions.TryRemove(compute.Handle, out _);
    public bool TryGet(Guid handle, out SessionCompute compute) => sessions.TryGetValue(handle, out compute!);

    public SessionCompute Get(Guid handle) => TryGet(handle, out var compute)
        ? compute
        : throw new InvalidOperationException($"session cache {handle} is not on this silo");
}
