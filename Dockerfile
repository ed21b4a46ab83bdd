# exed in a container: a static binary on a distroless base, as a non-root
# user, with its data (SQLite registry, SSH host key) in the volume /data.
#
#   docker build -t exed --build-arg VERSION=$(git describe --always --dirty) .
#   docker run -d --name exed -p 2222:2222 -p 8080:8080 -v exed-data:/data exed
#
# cmd/exed/docker_test.go runs this file's build-stage commands outside
# Docker, so the build is tested without a Docker engine.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary that needs no libc (the SQLite driver is pure Go).
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/exed ./cmd/exed
# The volume's mount point, owned by the runtime user: a new named volume
# takes its ownership from the image.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/exed /exed
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
ENV EXED_DATA=/data \
    EXED_SSH_ADDR=0.0.0.0:2222 \
    EXED_HTTP_ADDR=0.0.0.0:8080
EXPOSE 2222 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 CMD ["/exed", "healthcheck"]
ENTRYPOINT ["/exed"]
CMD ["serve"]
