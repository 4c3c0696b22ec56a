namespace TauCluster.Grains;

/// <summary>
/// Stateless compute, one activation per core on the caller's silo: runs a session's forward passes off the
/// grain scheduler, so at most as many sessions compute at once as there are workers and the rest queue.
/// Sessions pass a handle to their silo-local cache, never the cache itself.
/// </summary>
public interface ILayerWorkerGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// Runs the tokens through the model for the local session and returns the next token it samples. A long prefill or
    /// a busy silo may take minutes: the caller must not give up (and retry) while the step still runs on its cache.
    /// </summary>
    [ResponseTimeout("00:30:00")]
    Task<int> Step(ComputeStep step);
}

/// <summary>A silo-local session handle and the tokens to feed it (none: sample from the current logits).</summary>
[GenerateSerializer, Immutable]
public sealed record ComputeStep(
    [property: Id(0)] Guid Session,
    [property: Id(1)] int[] Tokens,
    [property: Id(2)] bool Sample);
