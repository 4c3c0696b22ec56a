namespace TauCluster.Engine;

/// <summary>
/// A session's run of decode steps through its <see cref="ComputeWorker"/> (<see cref="ComputeWorker.Generate"/>): the
/// worker samples each token and feeds it back itself, and the caller takes the tokens in order as they come.
/// </summary>
public readonly struct DecodeRun
{
    private readonly SessionStep step;

    internal DecodeRun(SessionStep step) => this.step = step;

    /// <summary>The next token: at once when the worker has computed it, otherwise when its pass has.</summary>
    public ValueTask<int> Next() => step.NextToken();

    /// <summary>The sampler's generator as it stood after the last token taken: what a checkpoint of those tokens saves.</summary>
    public RngState Generator => step.TakenGenerator;

    /// <summary>
    /// Ends the run: waits until the worker has let go of the session, then leaves it as though only the tokens taken
    /// had been generated (its cache cut back, its generator as after the last taken draw). Returns false, rather than
    /// throwing, when the run failed, even after the last token taken: the session's cache is then in no known state.
    /// </summary>
    public async ValueTask<bool> Stop()
    {
        await step.StopRun();
        return step.EndRun();
    }
}
