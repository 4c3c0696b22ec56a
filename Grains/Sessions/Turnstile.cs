namespace TauCluster.Grains;

/// <summary>
/// Serves a reentrant grain's calls one at a time, in the order they arrive, while the grain stays free to accept more
/// (a generation stream in progress, reads that answer at once): <c>using var turn = await turnstile.Enter();</c>.
/// </summary>
internal sealed class Turnstile
{
    private readonly SemaphoreSlim turn = new(1, 1);

    public async ValueTask<Turn> Enter(CancellationToken cancellation = default)
    {
        await turn.WaitAsync(cancellation);
        return new Turn(turn);
    }

    public readonly struct Turn(SemaphoreSlim turn) : IDisposable
    {
        public void Dispose() => turn.Release();
    }
}
