def f(ctx):
    return (
